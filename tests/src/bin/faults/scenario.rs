//! What one lifecycle is made of, drawn from its scenario stream: the order (payment-method
//! family, currency, lines, rounding tolerance, authorization), the tenant set-up (quiet hours,
//! start time, ERP listing style, queue redrive limit), the document history applied to the ERP
//! and PSP over simulated time, and the fault profile (rates the fault stream draws against).
//!
//! Everything here is plain data with a one-line `Display`, so a failing lifecycle prints as a
//! short trace that replays exactly.

use crate::rng::Rng;
use chrono::{DateTime, Duration, TimeZone, Utc};
use paybridge_core::config::Mode;
use paybridge_core::money::{Currency, Money};
use std::fmt;

/// The payment-method families of behaviour.md §3.5a that the harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Card authorized at checkout, standard mode: capture everything before release.
    CardStandard,
    /// Card authorized at checkout, expert mode: capture per invoice, close after the last.
    CardExpert,
    /// Card charged in the shop: only verification, bookings and refunds remain.
    CardCharged,
    /// Sofort: charged in the shop.
    Sofort,
    /// Bank transfer in advance: lock until received, book when received and CLOSED.
    Prepayment,
    /// Paylater invoice: the charge per invoice starts the payment term.
    PaylaterInvoice,
    /// Paylater direct debit: charge per invoice, the remainder expires.
    PaylaterDebit,
    /// Deprecated invoice secured: shipment call per invoice, booking when CLOSED.
    InvoiceSecured,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::CardStandard,
        Family::CardExpert,
        Family::CardCharged,
        Family::Sofort,
        Family::Prepayment,
        Family::PaylaterInvoice,
        Family::PaylaterDebit,
        Family::InvoiceSecured,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Family::CardStandard => "card-authorized-standard",
            Family::CardExpert => "card-authorized-expert",
            Family::CardCharged => "card-charged-in-shop",
            Family::Sofort => "sofort",
            Family::Prepayment => "prepayment",
            Family::PaylaterInvoice => "paylater-invoice",
            Family::PaylaterDebit => "paylater-direct-debit",
            Family::InvoiceSecured => "invoice-secured",
        }
    }

    /// The customer pays by transfer later (receipts arrive at the PSP).
    pub fn receives_transfers(self) -> bool {
        matches!(self, Family::Prepayment | Family::InvoiceSecured)
    }

    /// The initial transaction is an authorization that may still be pending at import.
    pub fn authorizes(self) -> bool {
        matches!(
            self,
            Family::CardStandard
                | Family::CardExpert
                | Family::PaylaterInvoice
                | Family::PaylaterDebit
        )
    }
}

/// How the PSP's initial amount relates to the ERP order total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDiff {
    Exact,
    /// Off by this many minor units, within the rounding tolerance.
    Within(i64),
    /// Off by this many minor units, beyond the tolerance (release with lock + error).
    Outside(i64),
}

/// The drawn order and tenant set-up.
#[derive(Debug, Clone)]
pub struct OrderDraw {
    pub family: Family,
    pub mode: Mode,
    pub currency: Currency,
    pub tolerance: u32,
    /// Line amounts in minor units.
    pub lines: Vec<i64>,
    pub auth_minor: i64,
    pub auth_diff: AuthDiff,
    /// The initial authorization is still pending at import (settles by a history step).
    pub auth_pending: bool,
    /// Tenant quiet hours "00:00-04:00" (Europe/Berlin) instead of "off".
    pub quiet: bool,
    pub start: DateTime<Utc>,
    /// The ERP lists like pixi (HOLD orders and uncaptured invoices on every poll, plus changed
    /// orders) instead of changed orders only.
    pub pixi_listing: bool,
    /// Queue receives before a message is dead-lettered.
    pub max_receives: u32,
}

impl OrderDraw {
    pub fn money(&self, minor: i64) -> Money {
        Money::from_minor(minor, self.currency)
    }

    pub fn total_minor(&self) -> i64 {
        self.lines.iter().sum()
    }
}

impl fmt::Display for OrderDraw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, m)| format!("L{}={}", i + 1, self.money(*m).amount()))
            .collect();
        let diff = match self.auth_diff {
            AuthDiff::Exact => "exact".to_string(),
            AuthDiff::Within(d) => format!("off by {d} within tolerance"),
            AuthDiff::Outside(d) => format!("off by {d} OUTSIDE tolerance"),
        };
        let berlin = self.start + Duration::hours(berlin_offset_hours(self.start));
        write!(
            f,
            "order: family={} mode={:?} currency={} tolerance={} lines=[{}] total={} initial={} ({diff}){} quiet={} start={} (Berlin {}) listing={} max_receives={}",
            self.family.label(),
            self.mode,
            self.currency,
            self.tolerance,
            lines.join(" "),
            self.money(self.total_minor()).amount(),
            self.money(self.auth_minor).amount(),
            if self.auth_pending {
                " pending-at-import"
            } else {
                ""
            },
            if self.quiet { "00:00-04:00" } else { "off" },
            self.start.format("%Y-%m-%dT%H:%M:%SZ"),
            berlin.format("%H:%M"),
            if self.pixi_listing {
                "pixi"
            } else {
                "changed-only"
            },
            self.max_receives,
        )
    }
}

/// Europe/Berlin's UTC offset at `t` for display (CET/CEST by the EU rule: last Sunday of March
/// and October, 01:00 UTC). The product itself uses chrono-tz.
fn berlin_offset_hours(t: DateTime<Utc>) -> i64 {
    use chrono::Datelike;
    let last_sunday = |year: i32, month: u32| {
        let mut d = Utc
            .with_ymd_and_hms(year, month + 1, 1, 1, 0, 0)
            .single()
            .expect("valid date")
            - Duration::days(1);
        while d.weekday() != chrono::Weekday::Sun {
            d -= Duration::days(1);
        }
        d
    };
    let y = t.year();
    if t >= last_sunday(y, 3) && t < last_sunday(y, 10) {
        2
    } else {
        1
    }
}

/// A webhook Unzer sends: `delay` seconds after the PSP-side change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub delay: i64,
    pub event: &'static str,
}

/// One step of the document history (resolved against the ERP's state when it happens).
#[derive(Debug, Clone)]
pub enum Action {
    /// The shop interface imports the order into the ERP (HOLD).
    Import,
    /// The warehouse ships up to `lines` open lines with one invoice.
    Ship {
        lines: u32,
        discount_pct: u32,
        /// Minor units added to the invoice (rounding), at most the tolerance.
        round_up: u32,
        /// Ship even though the order carries a shipping lock.
        ignore_lock: bool,
    },
    /// One open line is cancelled (STO) or marked not deliverable (NLB).
    CancelLine { pick: u64, nlb: bool },
    /// Every open line is cancelled.
    CancelRest,
    /// The order is CLOSED once nothing is left to ship.
    Close,
    /// A credit note for `pct`% of what is left to credit on an invoice.
    Credit { pick: u64, pct: u32, settled: bool },
    /// The customer's transfer arrives at the PSP; Unzer then sends `hooks`.
    Receipt { partial: bool, hooks: Vec<Hook> },
    /// A pending initial authorization succeeds at the PSP.
    AuthSettles { hooks: Vec<Hook> },
    /// An unrelated ERP edit (the order shows up as changed).
    Touch,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hooks = |hs: &[Hook]| {
            hs.iter()
                .map(|h| format!("{}@+{}s", h.event, h.delay))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Action::Import => write!(f, "import (HOLD)"),
            Action::Ship {
                lines,
                discount_pct,
                round_up,
                ignore_lock,
            } => write!(
                f,
                "ship up to {lines} line(s) discount={discount_pct}% round-up={round_up}{}",
                if *ignore_lock { " ignoring-lock" } else { "" }
            ),
            Action::CancelLine { pick, nlb } => {
                write!(
                    f,
                    "cancel line #{pick} as {}",
                    if *nlb { "NLB" } else { "STO" }
                )
            }
            Action::CancelRest => write!(f, "cancel every open line"),
            Action::Close => write!(f, "close"),
            Action::Credit { pick, pct, settled } => write!(
                f,
                "credit note for invoice #{pick} {pct}%{}",
                if *settled { " (settled in ERP)" } else { "" }
            ),
            Action::Receipt { partial, hooks: hs } => write!(
                f,
                "customer transfer {} webhooks=[{}]",
                if *partial {
                    "half of what is due"
                } else {
                    "all that is due"
                },
                hooks(hs)
            ),
            Action::AuthSettles { hooks: hs } => {
                write!(f, "authorization settles webhooks=[{}]", hooks(hs))
            }
            Action::Touch => write!(f, "unrelated ERP edit"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Seconds after the lifecycle start.
    pub at: i64,
    pub action: Action,
}

/// Rates the fault stream draws against. Per-call rates are in basis points (1/10,000) per
/// adapter call of the kind named; delivery rates in per mille.
#[derive(Debug, Clone, Default)]
pub struct FaultProfile {
    pub level: &'static str,
    /// Process death at an adapter call (half before it, half after it for writes).
    pub crash: u64,
    /// A slow call on a write: the clock advances and other workers run meanwhile.
    pub pause: u64,
    pub psp_unknown_applied: u64,
    pub psp_unknown_lost: u64,
    pub psp_retryable: u64,
    pub psp_declined: u64,
    pub psp_read_down: u64,
    pub erp_lose_reply: u64,
    pub erp_unavailable: u64,
    pub erp_unknown_lost: u64,
    pub erp_read_down: u64,
    pub erp_readback_none: u64,
    /// Store / queue calls failing without effect (throttling, 5xx); the process goes on.
    pub store_error: u64,
    pub queue_error: u64,
    /// Per mille of received messages re-sent as a duplicate (SQS at-least-once).
    pub dup_delivery: u64,
    /// Batches are handled in a shuffled order.
    pub reorder: bool,
    /// Per mille of PSP money transactions followed by an Unzer webhook.
    pub tx_hooks: u64,
    /// Outside the product's stated assumptions: pauses longer than the operation lease, and
    /// PSP calls that time out and are applied by the PSP later (opt-in with `--hazards`).
    pub hazards: bool,
    pub late_apply: u64,
}

impl FaultProfile {
    pub fn draw(rng: &mut Rng, hazards: bool) -> FaultProfile {
        let level = rng.weighted(&[10, 30, 35, 25]);
        let mut p = match level {
            0 => FaultProfile {
                level: "none",
                ..FaultProfile::default()
            },
            1 => FaultProfile {
                level: "light",
                crash: 15,
                pause: 30,
                psp_unknown_applied: 500,
                psp_unknown_lost: 300,
                psp_retryable: 500,
                psp_declined: 30,
                psp_read_down: 100,
                erp_lose_reply: 500,
                erp_unavailable: 500,
                erp_unknown_lost: 300,
                erp_read_down: 100,
                erp_readback_none: 0,
                store_error: 10,
                queue_error: 10,
                dup_delivery: 50,
                reorder: true,
                tx_hooks: 300,
                hazards: false,
                late_apply: 0,
            },
            2 => FaultProfile {
                level: "medium",
                crash: 60,
                pause: 100,
                psp_unknown_applied: 1000,
                psp_unknown_lost: 600,
                psp_retryable: 800,
                psp_declined: 60,
                psp_read_down: 300,
                erp_lose_reply: 1000,
                erp_unavailable: 800,
                erp_unknown_lost: 600,
                erp_read_down: 300,
                erp_readback_none: 20,
                store_error: 30,
                queue_error: 30,
                dup_delivery: 150,
                reorder: true,
                tx_hooks: 500,
                hazards: false,
                late_apply: 0,
            },
            _ => FaultProfile {
                level: "heavy",
                crash: 200,
                pause: 200,
                psp_unknown_applied: 1500,
                psp_unknown_lost: 1000,
                psp_retryable: 1000,
                psp_declined: 100,
                psp_read_down: 600,
                erp_lose_reply: 1500,
                erp_unavailable: 1000,
                erp_unknown_lost: 800,
                erp_read_down: 600,
                erp_readback_none: 40,
                store_error: 80,
                queue_error: 60,
                dup_delivery: 300,
                reorder: true,
                tx_hooks: 700,
                hazards: false,
                late_apply: 0,
            },
        };
        if hazards && p.level != "none" {
            p.hazards = true;
            p.late_apply = 500;
        }
        p
    }
}

fn pct(bp: u64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "faults: level={} crash={} pause={} store-error={} queue-error={} psp[unknown-applied={} unknown-not-applied={} 5xx={} declined={} read-down={}] erp[lost-reply={} unavailable={} unknown-not-applied={} read-down={} read-back-none={}] dup-delivery={}‰ reorder={} tx-webhooks={}‰ hazards={}{}",
            self.level,
            pct(self.crash),
            pct(self.pause),
            pct(self.store_error),
            pct(self.queue_error),
            pct(self.psp_unknown_applied),
            pct(self.psp_unknown_lost),
            pct(self.psp_retryable),
            pct(self.psp_declined),
            pct(self.psp_read_down),
            pct(self.erp_lose_reply),
            pct(self.erp_unavailable),
            pct(self.erp_unknown_lost),
            pct(self.erp_read_down),
            pct(self.erp_readback_none),
            self.dup_delivery,
            if self.reorder { "yes" } else { "no" },
            self.tx_hooks,
            if self.hazards { "yes" } else { "no" },
            if self.hazards {
                format!(" late-apply={}", pct(self.late_apply))
            } else {
                String::new()
            },
        )
    }
}

/// How old the PSP's authorize transaction is when the lifecycle starts (issue 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgeClass {
    /// The family holds no authorization (charged in the shop, prepayment, invoice secured).
    NoAuth,
    /// The PSP gives no time: the engine counts from when it first saw the order.
    Unknown,
    /// Authorized at checkout, minutes or hours ago.
    Fresh,
    /// Already in the last quarter of its validity (the `authorization_expiring` hint).
    Warning,
    /// Expired before the lifecycle starts.
    Expired,
    /// Expires at a drawn moment while the history plays out (the clock crosses it).
    ExpiresDuring,
}

impl AgeClass {
    pub fn label(self) -> &'static str {
        match self {
            AgeClass::NoAuth => "no-authorization",
            AgeClass::Unknown => "unknown-age",
            AgeClass::Fresh => "fresh",
            AgeClass::Warning => "warning",
            AgeClass::Expired => "expired",
            AgeClass::ExpiresDuring => "expires-during",
        }
    }
}

/// The authorization's age draw.
#[derive(Debug, Clone)]
pub struct AuthAge {
    pub class: AgeClass,
    /// `authorization_validity_days` in the method config (`None`: the default applies).
    pub config_days: Option<u32>,
    /// The validity in force (config or default); `None` for `NoAuth`.
    pub days: Option<u32>,
    /// The authorize transaction's `at`, seconds relative to the lifecycle start (negative:
    /// before it); `None` for `NoAuth` and `Unknown`.
    pub at: Option<i64>,
}

impl AuthAge {
    /// When the authorization expires (seconds after the start), if the PSP says when it was
    /// made.
    pub fn expires(&self) -> Option<i64> {
        Some(self.at? + i64::from(self.days?) * 86_400)
    }
}

impl fmt::Display for AuthAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authorization: age={}", self.class.label())?;
        if let Some(d) = self.days {
            write!(
                f,
                " validity={d}d{}",
                if self.config_days.is_some() {
                    " (config)"
                } else {
                    " (default)"
                }
            )?;
        }
        if let (Some(at), Some(exp)) = (self.at, self.expires()) {
            write!(f, " authorized t{at:+}s expires t{exp:+}s")?;
        }
        Ok(())
    }
}

/// An operator takes the order out of automation (`off`) or puts it back, at `at` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub at: i64,
    pub off: bool,
}

/// Everything drawn for one lifecycle.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub order: OrderDraw,
    pub steps: Vec<Step>,
    pub faults: FaultProfile,
    pub auth: AuthAge,
    /// Hands-off switches, in time order (off, on, off, …).
    pub switches: Vec<Switch>,
}

/// The validity the engine applies by default to the family's authorization (card 7 days,
/// Paylater 28), from the core's own table.
fn default_days(family: Family) -> Option<u32> {
    use paybridge_core::engine::authorization::default_validity_days;
    use paybridge_core::model::{MethodFamily, PaymentMethod};
    match family {
        Family::CardStandard | Family::CardExpert => {
            default_validity_days(PaymentMethod::Card, MethodFamily::AuthorizeCapture)
        }
        Family::PaylaterInvoice => default_validity_days(
            PaymentMethod::PaylaterInvoice,
            MethodFamily::PaylaterInvoice,
        ),
        Family::PaylaterDebit => default_validity_days(
            PaymentMethod::PaylaterDirectDebit,
            MethodFamily::PaylaterDebit,
        ),
        _ => None,
    }
}

impl AuthAge {
    /// Draws the age of the authorization; `span` is how long the history lasts (seconds).
    fn draw(rng: &mut Rng, family: Family, span: i64) -> AuthAge {
        let config_days = rng.chance(1, 5).then(|| rng.range(1, 10) as u32);
        let Some(default) = default_days(family) else {
            return AuthAge {
                class: AgeClass::NoAuth,
                config_days,
                days: None,
                at: None,
            };
        };
        let days = config_days.unwrap_or(default);
        let validity = i64::from(days) * 86_400;
        // The engine's warning window: a quarter of the validity, at least a day.
        let window = (validity / 4).max(86_400).min(validity);
        let (class, age) = match rng.weighted(&[10, 30, 20, 15, 25]) {
            0 => (AgeClass::Unknown, None),
            1 => (AgeClass::Fresh, Some(rng.range(0, 2 * 3600))),
            2 => {
                let left = rng.range(window / 4, window - 1);
                (AgeClass::Warning, Some(validity - left))
            }
            3 => (AgeClass::Expired, Some(validity + rng.range(0, 5 * 86_400))),
            _ => {
                let left = rng.range(1, span.max(2));
                (AgeClass::ExpiresDuring, Some(validity - left))
            }
        };
        AuthAge {
            class,
            config_days,
            days: Some(days),
            at: age.map(|a| -a),
        }
    }
}

/// Draws the hands-off switches: in about a third of the lifecycles an operator takes the order
/// out of automation at a random point after the import, and usually puts it back later;
/// sometimes twice.
fn draw_switches(rng: &mut Rng, import_at: i64, last: i64) -> Vec<Switch> {
    let mut out = Vec::new();
    if !rng.chance(1, 3) {
        return out;
    }
    let mut t = import_at + rng.range(0, (last - import_at).max(1));
    loop {
        out.push(Switch { at: t, off: true });
        if !rng.chance(17, 20) {
            break; // left out of automation to the end
        }
        t += match rng.weighted(&[3, 4, 3]) {
            0 => rng.range(1, 600),
            1 => rng.range(600, 3 * 3600),
            _ => rng.range(3 * 3600, 12 * 3600),
        };
        out.push(Switch { at: t, off: false });
        if !rng.chance(1, 4) {
            break;
        }
        t += gap(rng);
    }
    out
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operator t+{}s {}",
            self.at,
            if self.off {
                "takes the order out of automation (hands-off)"
            } else {
                "puts the order back into automation"
            }
        )
    }
}

/// A gap between history steps, mostly short, sometimes hours.
fn gap(rng: &mut Rng) -> i64 {
    match rng.weighted(&[3, 4, 2, 1]) {
        0 => rng.range(5, 60),
        1 => rng.range(60, 900),
        2 => rng.range(900, 3 * 3600),
        _ => rng.range(3 * 3600, 10 * 3600),
    }
}

fn receipt_hooks(rng: &mut Rng, partial: bool) -> Vec<Hook> {
    let main = if partial {
        "payment.partly"
    } else {
        "payment.completed"
    };
    let mut hooks = vec![Hook {
        delay: rng.range(0, 300),
        event: main,
    }];
    if rng.chance(3, 10) {
        hooks.push(Hook {
            delay: rng.range(0, 300),
            event: "charge.succeeded",
        });
    }
    if rng.chance(3, 10) {
        // Unzer repeats a notification (at-least-once), possibly after the next one.
        let d = hooks[0].delay + rng.range(0, 600);
        hooks.push(Hook {
            delay: d,
            event: main,
        });
    }
    hooks
}

impl Scenario {
    /// `ops_rng` (its own stream) draws the authorization age and the hands-off switches, so
    /// adding them shifted no order, history or fault draw of a seed.
    pub fn draw(rng: &mut Rng, faults_rng: &mut Rng, ops_rng: &mut Rng, hazards: bool) -> Scenario {
        let family = Family::ALL[rng.below(Family::ALL.len() as u64) as usize];
        let mode = match family {
            Family::CardStandard => Mode::Standard,
            Family::CardExpert => Mode::Expert,
            _ => {
                if rng.chance(1, 2) {
                    Mode::Standard
                } else {
                    Mode::Expert
                }
            }
        };
        let currency = [Currency::EUR, Currency::JPY, Currency::KWD][rng.weighted(&[6, 2, 2])];
        let tolerance = rng.range(0, 2) as u32;
        let n = rng.range(1, 5) as usize;
        let lines: Vec<i64> = (0..n)
            .map(|_| match rng.weighted(&[1, 6, 2]) {
                0 => rng.range(1, 99),
                1 => rng.range(100, 20_000),
                _ => rng.range(20_000, 500_000),
            })
            .collect();
        let total: i64 = lines.iter().sum();
        let tol = i64::from(tolerance);
        let auth_diff = match rng.weighted(&[85, 10, 5]) {
            1 if tol > 0 => {
                let d = rng.range(1, tol);
                AuthDiff::Within(if rng.chance(1, 2) { d } else { -d })
            }
            2 => {
                let d = rng.range(tol + 1, tol + 300);
                AuthDiff::Outside(if rng.chance(1, 2) { d } else { -d })
            }
            _ => AuthDiff::Exact,
        };
        let auth_minor = match auth_diff {
            AuthDiff::Exact => total,
            AuthDiff::Within(d) | AuthDiff::Outside(d) => (total + d).max(1),
        };
        let auth_pending = family.authorizes() && rng.chance(1, 20);
        let quiet = rng.chance(6, 10);
        // Start: any time in late November / December (CET), often just before midnight
        // Berlin, sometimes on the night of a daylight-saving change.
        let start = match rng.weighted(&[60, 30, 5, 5]) {
            0 => {
                let day = rng.range(0, 30);
                Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
                    .single()
                    .expect("date")
                    + Duration::days(day)
                    + Duration::seconds(rng.range(0, 86_399))
            }
            1 => {
                // 22:00–23:59 UTC = 23:00–00:59 Berlin (CET)
                let day = rng.range(0, 30);
                Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0)
                    .single()
                    .expect("date")
                    + Duration::days(day)
                    + Duration::seconds(rng.range(0, 7_199))
            }
            2 => {
                // spring forward: Sunday 2027-03-28, 02:00 CET → 03:00 CEST
                Utc.with_ymd_and_hms(2027, 3, 27, 22, 0, 0)
                    .single()
                    .expect("date")
                    + Duration::seconds(rng.range(0, 4 * 3600))
            }
            _ => {
                // fall back: Sunday 2027-10-31, 03:00 CEST → 02:00 CET
                Utc.with_ymd_and_hms(2027, 10, 30, 21, 0, 0)
                    .single()
                    .expect("date")
                    + Duration::seconds(rng.range(0, 4 * 3600))
            }
        };
        let pixi_listing = rng.chance(1, 2);
        let max_receives = if rng.chance(1, 5) { 3 } else { 50 };
        let order = OrderDraw {
            family,
            mode,
            currency,
            tolerance,
            lines,
            auth_minor,
            auth_diff,
            auth_pending,
            quiet,
            start,
            pixi_listing,
            max_receives,
        };

        // History.
        let mut steps = Vec::new();
        let mut t = 0;
        if family.receives_transfers() && rng.chance(1, 5) {
            // Early receipt: the money (and Unzer's webhook) before the order is imported.
            let partial = rng.chance(1, 4);
            steps.push(Step {
                at: 0,
                action: Action::Receipt {
                    partial,
                    hooks: receipt_hooks(rng, partial),
                },
            });
            t += rng.range(30, 1800);
        } else {
            t += rng.range(0, 120);
        }
        steps.push(Step {
            at: t,
            action: Action::Import,
        });
        let mut settled = !auth_pending;
        let count = rng.range(2, 12);
        for _ in 0..count {
            t += gap(rng);
            let weights = [
                5,                                               // ship
                2,                                               // cancel line
                1,                                               // cancel rest
                3,                                               // close
                2,                                               // credit
                if family.receives_transfers() { 3 } else { 0 }, // receipt
                if settled { 0 } else { 4 },                     // auth settles
                1,                                               // touch
            ];
            let action = match rng.weighted(&weights) {
                0 => Action::Ship {
                    lines: rng.range(1, 3) as u32,
                    discount_pct: if rng.chance(1, 5) {
                        rng.range(1, 30) as u32
                    } else {
                        0
                    },
                    round_up: if tolerance > 0 && rng.chance(1, 10) {
                        rng.range(1, i64::from(tolerance)) as u32
                    } else {
                        0
                    },
                    ignore_lock: rng.chance(1, 6),
                },
                1 => Action::CancelLine {
                    pick: rng.next_u64(),
                    nlb: rng.chance(1, 3),
                },
                2 => Action::CancelRest,
                3 => Action::Close,
                4 => Action::Credit {
                    pick: rng.next_u64(),
                    pct: if rng.chance(1, 3) {
                        100
                    } else {
                        rng.range(1, 100) as u32
                    },
                    settled: rng.chance(1, 30),
                },
                5 => {
                    let partial = rng.chance(1, 4);
                    Action::Receipt {
                        partial,
                        hooks: receipt_hooks(rng, partial),
                    }
                }
                6 => {
                    settled = true;
                    Action::AuthSettles {
                        hooks: vec![Hook {
                            delay: rng.range(0, 120),
                            event: "authorize.succeeded",
                        }],
                    }
                }
                _ => Action::Touch,
            };
            steps.push(Step { at: t, action });
        }
        if rng.chance(3, 5) {
            // Wrap-up: the rest ships, the money arrives, the order closes.
            if !settled {
                t += gap(rng);
                steps.push(Step {
                    at: t,
                    action: Action::AuthSettles {
                        hooks: vec![Hook {
                            delay: rng.range(0, 120),
                            event: "authorize.succeeded",
                        }],
                    },
                });
            }
            if family.receives_transfers() {
                t += gap(rng);
                steps.push(Step {
                    at: t,
                    action: Action::Receipt {
                        partial: false,
                        hooks: receipt_hooks(rng, false),
                    },
                });
            }
            t += gap(rng);
            steps.push(Step {
                at: t,
                action: Action::Ship {
                    lines: 99,
                    discount_pct: 0,
                    round_up: 0,
                    ignore_lock: true,
                },
            });
            t += rng.range(60, 3600);
            steps.push(Step {
                at: t,
                action: Action::Close,
            });
            if rng.chance(1, 3) {
                t += gap(rng);
                steps.push(Step {
                    at: t,
                    action: Action::Credit {
                        pick: rng.next_u64(),
                        pct: rng.range(1, 100) as u32,
                        settled: false,
                    },
                });
            }
        }
        let faults = FaultProfile::draw(faults_rng, hazards);
        let import_at = steps
            .iter()
            .find(|s| matches!(s.action, Action::Import))
            .map_or(0, |s| s.at);
        let last = steps.last().map_or(0, |s| s.at);
        let auth = AuthAge::draw(ops_rng, family, last + 600);
        let switches = draw_switches(ops_rng, import_at, last);
        Scenario {
            order,
            steps,
            faults,
            auth,
            switches,
        }
    }
}
