//! Authorization lifetime (issue 12; seed 000 Paylater: "Nach Ablauf der Autorisierung ist die
//! Bestellung nicht mehr gültig"): an authorization the PSP holds for a limited time. A hint when
//! an uncaptured authorization nears its end, an error once it has expired with money still to
//! capture, and no capture planned after expiry (the PSP would refuse it) — the error says why.
//! A capture planned in time but due only after expiry (a retry, a long queue) is held back by
//! the worker, which checks [`span`] again just before sending.
//!
//! The age is counted from the PSP's authorize transaction (its `at`); when the PSP gives no
//! time, from when paybridge first saw the order (later than the authorization, so the hint
//! comes late rather than never).

use super::{Cx, Facts, Problem};
use crate::config::MethodConfig;
use crate::model::{MethodFamily, OrderStatus, PaymentMethod, Position, PspPayment};
use crate::money::{Money, MoneyError};
use chrono::{DateTime, Duration, Utc};

/// Days an authorization holds when the method config does not say: card and Apple Pay 7
/// (card-not-present authorizations commonly hold 7 days), PayPal 29 (PayPal's honour of an
/// order id), Paylater 28 (not published by the PSP: a cautious guess below a month). `None` for
/// families that hold no authorization (charged in the shop, prepayment, legacy invoice).
pub fn default_validity_days(method: PaymentMethod, family: MethodFamily) -> Option<u32> {
    match family {
        MethodFamily::AuthorizeCapture if method == PaymentMethod::Paypal => Some(29),
        MethodFamily::AuthorizeCapture => Some(7),
        MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit => Some(28),
        MethodFamily::ChargedInShop | MethodFamily::Prepayment | MethodFamily::InvoiceLegacy => {
            None
        }
    }
}

/// When the payment's authorization was made, when it stops being capturable, and its validity
/// in days; `None` for a family that holds no authorization (whatever the config says). The
/// time is the PSP's authorize transaction's, else `first_seen` (when paybridge first saw the
/// order). The worker checks a capture against it once more just before sending.
pub fn span(
    p: &PspPayment,
    cfg: &MethodConfig,
    first_seen: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>, u32)> {
    let default = default_validity_days(p.method, p.family())?;
    let days = cfg.authorization_validity_days.unwrap_or(default);
    let at = p.initial()?.at.unwrap_or(first_seen);
    Some((at, at + Duration::days(i64::from(days)), days))
}

/// Where an authorization stands in its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifetime {
    /// No limit applies (no authorization, or nothing left to capture).
    Unlimited,
    Valid,
    /// In the last quarter of its validity (at least the last day).
    Expiring,
    Expired,
}

/// The window before expiry in which the hint shows: a quarter of the validity, at least a day.
fn warn_window(days: u32) -> Duration {
    (Duration::days(i64::from(days)) / 4).max(Duration::days(1))
}

impl Cx<'_, '_> {
    /// When the authorization was made and when it expires, if a limit applies.
    fn auth_span(&self, f: &Facts<'_>) -> Option<(DateTime<Utc>, DateTime<Utc>, u32)> {
        span(f.p, f.cfg, self.input.first_seen)
    }

    /// The authorization's lifetime now, with its hint or error; `open` is what is still
    /// capturable. Asks to be evaluated again when the hint or the expiry is due.
    pub(super) fn lifetime(&mut self, f: &Facts<'_>, open: Money) -> Lifetime {
        let o = self.order();
        let to_ship = o.status != OrderStatus::Closed && !o.nothing_left_to_ship();
        let to_capture =
            open.is_positive() && (to_ship || self.uncaptured_invoices().next().is_some());
        let Some((at, expires, days)) = self.auth_span(f).filter(|_| to_capture) else {
            return Lifetime::Unlimited;
        };
        let now = self.input.now;
        let warn_from = expires - warn_window(days);
        if now >= expires {
            let invoices: Vec<String> = self.uncaptured_invoices().collect();
            self.problem(Problem::AuthorizationExpired {
                at,
                expired: expires,
                open,
                invoices,
            });
            return Lifetime::Expired;
        }
        self.recheck(expires);
        if now >= warn_from {
            self.problem(Problem::AuthorizationExpiring { at, expires, open });
            return Lifetime::Expiring;
        }
        self.recheck(warn_from);
        Lifetime::Valid
    }

    /// At release: why the order cannot be released as checked because its authorization
    /// expired with money still to capture (it is released with shipping lock instead).
    pub(super) fn expired_at_release(
        &self,
        f: &Facts<'_>,
        pos: &Position,
    ) -> Result<Option<String>, MoneyError> {
        let Some((at, expires, _)) = self.auth_span(f) else {
            return Ok(None);
        };
        let open = pos.remaining()?;
        Ok((self.input.now >= expires && open.is_positive()).then(|| {
            format!(
                "the authorization of {} expired on {}: {open} cannot be captured any more",
                at.format("%Y-%m-%d"),
                expires.format("%Y-%m-%d")
            )
        }))
    }

    /// Invoices neither captured by paybridge nor marked captured in the ERP.
    fn uncaptured_invoices(&self) -> impl Iterator<Item = String> + '_ {
        self.order()
            .invoices
            .iter()
            .filter(|i| !i.captured && !self.invoice_ours(&i.invoice_id))
            .map(|i| i.invoice_id.clone())
    }
}
