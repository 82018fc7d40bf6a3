//! Paygate's wire ↔ paybridge's model: the request plaintext, the three reply shapes of §1.6
//! (`Len`/`Data` encrypted; an unencrypted `mid=…&Status=…&Code=…` error; the text
//! "Unexpected exception" for wrong credentials), `Code` read by its first digit (§3.7), a
//! money call's reply as a [`PspOutcome`], and an inquire's totals (§3.2) as a [`PspPayment`].
//!
//! The inquire → payment mapping (Paygate reports totals, so the view is `totals_only`):
//! - the initial transaction is the shop's payment: an authorization of `AmountAuth` for the
//!   reserved methods (card, Klarna, BillSAFE: `Capture=MANUAL` at checkout), a charge for
//!   the methods booked at once (PayPal, Sofort); its id is the payment's `TransID` (the shop's
//!   id of the payment, reused on every call as the plugins do, §2), else the PayID;
//! - `AmountCap` (reserved methods) is one charge, `AmountCred` one refund;
//! - pending: no amount authorized and `LastStatus` pending (`PENDING`, `AUTHORIZE_REQUEST`),
//!   or a `Code` starting with 6/7; failed: nothing authorized otherwise;
//! - a last step still pending (`LastStatus` `PENDING` after the authorization: a capture or
//!   credit Paygate answered with a `6…` code): one pending transaction `{PayID}-last-pending`
//!   (amount zero: the totals do not show it), so reconciliation never takes such a call for
//!   "not sent" — a resubmission under its `ReqId` would run again while the first is open (§3.7);
//! - PayPal and Sofort are booked at once: their initial charge is what `AmountCap` shows; an
//!   amount authorized but not (yet) captured is a *pending* charge, never money received;
//! - a reversed authorization: `LastStatus` naming a reversal (`REVERSED`, `CANCELED`,
//!   `CANCELLED`, `VOIDED`) with nothing captured. **Inferred [I]**: no public page shows what
//!   inquire answers after `reverse.aspx`. The simulator takes the other plausible reading
//!   (`AmountAuth` unchanged, `LastStatus` the reversal's `OK`), so against it a reversal does
//!   not show in the view: the flows then rely on the ledger's finished reversal (the e2e
//!   suite's cancellations pass that way). Check on Computop's test platform.
//! - Klarna and BillSAFE have no method of their own in the neutral model: they are read as the
//!   authorize-then-capture family (`card`); their authorization lifetime comes from the method
//!   config's `authorization_validity_days`.

use super::Account;
use super::envelope;
use crate::config::MethodConfig;
use crate::model::{PaymentMethod, PaymentState, PspPayment, PspTransaction, TxKind, TxStatus};
use crate::money::{Currency, Money};
use crate::psp::{PspError, PspOutcome};
use reqwest::StatusCode;

/// The plaintext `k=v&…` of a request. Values must be printable ASCII without `&` or `=`
/// (Paygate cannot escape them, §1.2).
pub fn plaintext(fields: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (k, v) in fields {
        if let Some(c) = v
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '&' || *c == '=')
        {
            return Err(format!("{k} holds {c:?}, which Paygate cannot carry"));
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Ok(out)
}

/// A PayID as paybridge accepts one: 1–32 ASCII letters or digits (Paygate: `an32`).
pub fn valid_pay_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Paygate's answer to credentials it cannot use (§1.6: "Unexpected exception").
    #[error("Paygate refused the credentials (\"Unexpected exception\") — a configuration error")]
    Credentials,
    #[error("unreadable reply: {0}")]
    Unreadable(String),
}

/// A reply's fields, keys lower-cased (§1.6: their case varies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    fields: Vec<(String, String)>,
    /// Whether it came in the account's envelope (an unencrypted error reply did not).
    pub encrypted: bool,
}

impl Reply {
    /// Reads a reply body: `Len`/`Data` opened with the account's key, or an unencrypted
    /// error.
    pub fn read(body: &str, account: &Account) -> Result<Reply, ReplyError> {
        if body.contains("Unexpected exception") {
            return Err(ReplyError::Credentials);
        }
        let outer: Vec<(String, String)> = url::form_urlencoded::parse(body.trim().as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect();
        let get = |k: &str| outer.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let (Some(len), Some(data)) = (get("len"), get("data")) {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| ReplyError::Unreadable(format!("Len {len:?} is not a number")))?;
            let plain = envelope::open(account.cipher_key(), data, len)
                .map_err(|e| ReplyError::Unreadable(format!("cannot decrypt: {e}")))?;
            return Ok(Reply {
                fields: lower(envelope::pairs(&plain)),
                encrypted: true,
            });
        }
        if get("code").is_some() {
            return Ok(Reply {
                fields: outer,
                encrypted: false,
            });
        }
        Err(ReplyError::Unreadable(
            "neither Len/Data nor an error with a Code".into(),
        ))
    }

    /// A field by its lower-case name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The reply's `Code` read by its first digit.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.get("code").unwrap_or(""))
    }

    fn describe(&self) -> String {
        let code = self.get("code").unwrap_or("(no Code)");
        let status = self.get("status").unwrap_or("");
        let desc = self.get("description").unwrap_or("");
        format!("{code} {status} {desc}").trim().to_string()
    }
}

fn lower(pairs: Vec<(&str, &str)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// What a `Code` says, by its first digit (§3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `0`: done.
    Ok,
    /// `2` error, `4` fatal error.
    Failed,
    /// `6`: transient; the final status follows.
    Pending,
    /// `7`: an EMV 3-D Secure step in between.
    ThreeDs,
    /// No `Code`, or one that is not 8 letters or digits.
    Unreadable,
}

impl Verdict {
    pub fn of(code: &str) -> Verdict {
        let code = code.trim();
        if code.len() != 8 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Verdict::Unreadable;
        }
        match code.as_bytes()[0] {
            b'0' => Verdict::Ok,
            b'2' | b'4' => Verdict::Failed,
            b'6' => Verdict::Pending,
            b'7' => Verdict::ThreeDs,
            _ => Verdict::Unreadable,
        }
    }
}

/// What a money call's reply must echo.
pub struct Expect<'a> {
    pub pay_id: &'a str,
    /// Minor units, as sent.
    pub amount: &'a str,
    pub currency: &'a str,
}

/// The outcome of a money call's reply (the table in the module doc of the connector).
pub fn outcome(
    endpoint: &str,
    status: StatusCode,
    body: &str,
    account: &Account,
    expect: &Expect<'_>,
) -> PspOutcome {
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return PspOutcome::Retryable {
            message: format!("{endpoint}: HTTP 429, rate limited"),
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return PspOutcome::Unknown {
            message: format!("{endpoint}: HTTP {code}; Paygate may have processed it"),
        };
    }
    if matches!(code, 401 | 403 | 404) {
        return declined(
            &format!("HTTP {code}"),
            format!(
                "{endpoint}: HTTP {code} — a configuration error (api_host, account), not retried"
            ),
        );
    }
    let reply = match Reply::read(body, account) {
        Ok(r) => r,
        Err(ReplyError::Credentials) => {
            return declined("PAYBRIDGE.CREDENTIALS", ReplyError::Credentials.to_string());
        }
        Err(ReplyError::Unreadable(why)) if status.is_success() => {
            return PspOutcome::Unknown {
                message: format!("{endpoint}: {why}; Paygate may have processed it"),
            };
        }
        Err(ReplyError::Unreadable(why)) => {
            return declined(&format!("HTTP {code}"), format!("{endpoint}: {why}"));
        }
    };
    if let Some(mid) = reply.get("mid")
        && mid != account.merchant_id
    {
        return PspOutcome::Unknown {
            message: format!("{endpoint}: reply for MerchantID {mid:?}, not ours"),
        };
    }
    if let Some(p) = reply.get("payid")
        && !p.is_empty()
        && !p.eq_ignore_ascii_case(expect.pay_id)
    {
        return PspOutcome::Unknown {
            message: format!("{endpoint}: reply for PayID {p:?}, not {:?}", expect.pay_id),
        };
    }
    let tx_id = reply
        .get("xid")
        .filter(|x| valid_pay_id(x))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{endpoint}", expect.pay_id));
    match reply.verdict() {
        Verdict::Failed => declined(reply.get("code").unwrap_or("?"), reply.describe()),
        Verdict::Pending | Verdict::ThreeDs => PspOutcome::Pending { tx_id },
        Verdict::Unreadable => PspOutcome::Unknown {
            message: format!(
                "{endpoint}: reply without a readable Code ({})",
                reply.describe()
            ),
        },
        Verdict::Ok if !reply.encrypted => PspOutcome::Unknown {
            message: format!("{endpoint}: a success outside the envelope is not believed"),
        },
        Verdict::Ok => {
            if let Some(a) = reply.get("amount")
                && a.trim() != expect.amount
            {
                return PspOutcome::Unknown {
                    message: format!(
                        "{endpoint}: reply amount {a} differs from the {} we sent",
                        expect.amount
                    ),
                };
            }
            if let Some(c) = reply.get("currency")
                && !c.trim().eq_ignore_ascii_case(expect.currency)
            {
                return PspOutcome::Unknown {
                    message: format!(
                        "{endpoint}: reply currency {c} differs from the {} we sent",
                        expect.currency
                    ),
                };
            }
            PspOutcome::Done { tx_id }
        }
    }
}

fn declined(code: &str, message: impl Into<String>) -> PspOutcome {
    PspOutcome::Declined {
        code: code.into(),
        message: message.into(),
    }
}

/// The `TransID` a call on this payment carries: the payment's own (the initial
/// transaction's id, see the module doc), else our reference.
pub fn trans_id(payment: &PspPayment, reference: &str) -> String {
    match payment.initial() {
        Some(t) if t.id != payment.payment_id && !t.id.is_empty() => t.id.clone(),
        _ => reference.to_string(),
    }
}

/// Whether a reversal of `amount` is what `reverse.aspx` does: the authorization is the last
/// step (nothing captured, refunded or reversed) and the whole of it is reversed.
pub fn reversal_is_last_step(payment: &PspPayment, amount: Money) -> bool {
    let Ok(pos) = payment.position() else {
        return false;
    };
    let init_is_auth = payment
        .initial()
        .is_some_and(|t| t.kind == TxKind::Authorize && t.status == TxStatus::Success);
    init_is_auth
        && pos.charged.is_zero()
        && pos.refunded.is_zero()
        && pos.reversed.is_zero()
        && pos.authorized == amount
}

/// The payment method a config names (validated at load).
fn method(cfg: &MethodConfig) -> (PaymentMethod, bool) {
    match cfg.account.extra.psp_method.as_deref() {
        Some("paypal") => (PaymentMethod::Paypal, true),
        Some("sofort") => (PaymentMethod::Sofort, true),
        _ => (PaymentMethod::Card, false),
    }
}

fn minor(reply: &Reply, key: &str, currency: Currency) -> Result<Money, PspError> {
    match reply.get(key).map(str::trim) {
        None | Some("") => Ok(Money::zero(currency)),
        Some(v) => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| *n >= 0 && *n <= 9_999_999_999)
                .ok_or_else(|| {
                    PspError::BadReply(format!("inquire: {key} {v:?} is not an amount"))
                })?;
            Ok(Money::from_minor(n, currency))
        }
    }
}

/// The id of the transaction that stands for a pending last step (see the module doc).
pub fn last_pending_id(pay_id: &str) -> String {
    format!("{pay_id}-last-pending")
}

/// An inquire reply as the payment's view (see the module doc).
pub fn payment(
    reply: &Reply,
    account: &Account,
    cfg: &MethodConfig,
    pay_id: &str,
) -> Result<PspPayment, PspError> {
    match reply.verdict() {
        Verdict::Ok => {}
        Verdict::Failed => {
            return Err(PspError::NotFound(format!(
                "Paygate refused the inquiry for {pay_id}: {}",
                reply.describe()
            )));
        }
        _ => {
            return Err(PspError::BadReply(format!(
                "inquire: no final Code ({})",
                reply.describe()
            )));
        }
    }
    if !reply.encrypted {
        return Err(PspError::BadReply(
            "inquire: a success outside the envelope".into(),
        ));
    }
    if let Some(mid) = reply.get("mid")
        && mid != account.merchant_id
    {
        return Err(PspError::BadReply(format!(
            "inquire: reply for MerchantID {mid:?}"
        )));
    }
    if let Some(p) = reply.get("payid")
        && !p.eq_ignore_ascii_case(pay_id)
    {
        return Err(PspError::BadReply(format!(
            "inquire: reply for PayID {p:?}"
        )));
    }
    let currency = reply
        .get("currency")
        .ok_or_else(|| PspError::BadReply("inquire: no Currency".into()))
        .and_then(|c| {
            Currency::from_code(c.trim()).map_err(|e| PspError::BadReply(format!("inquire: {e}")))
        })?;
    let auth = minor(reply, "amountauth", currency)?;
    let cap = minor(reply, "amountcap", currency)?;
    let cred = minor(reply, "amountcred", currency)?;
    let last = reply
        .get("laststatus")
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let pending_last = matches!(last.as_str(), "PENDING" | "AUTHORIZE_REQUEST");
    let reversed = matches!(
        last.as_str(),
        "REVERSED" | "CANCELED" | "CANCELLED" | "VOIDED"
    ) && cap.is_zero();
    let (method, booked) = method(cfg);
    let trans = reply
        .get("transid")
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_graphic()));
    let initial_amount = if booked && cap.is_positive() {
        cap
    } else {
        auth
    };
    let initial_status = if booked && cap.is_zero() && auth.is_positive() {
        TxStatus::Pending // authorized, not booked yet: no money received
    } else if initial_amount.is_positive() {
        TxStatus::Success
    } else if pending_last {
        TxStatus::Pending
    } else {
        TxStatus::Error
    };
    let tx = |id: String, kind: TxKind, amount: Money| PspTransaction {
        id,
        kind,
        status: TxStatus::Success,
        amount,
        reference: None,
        at: None,
    };
    let mut transactions = vec![PspTransaction {
        id: trans.unwrap_or(pay_id).to_string(),
        kind: if booked {
            TxKind::Charge
        } else {
            TxKind::Authorize
        },
        status: initial_status,
        amount: initial_amount,
        reference: None,
        at: None,
    }];
    if !booked && cap.is_positive() {
        transactions.push(tx(format!("{pay_id}-captured"), TxKind::Charge, cap));
    }
    if reversed && auth.is_positive() {
        transactions.push(tx(
            format!("{pay_id}-reversed"),
            TxKind::CancelAuthorize,
            auth,
        ));
    }
    if cred.is_positive() {
        transactions.push(tx(format!("{pay_id}-credited"), TxKind::CancelCharge, cred));
    }
    if pending_last && initial_status == TxStatus::Success {
        transactions.push(PspTransaction {
            status: TxStatus::Pending,
            ..tx(
                last_pending_id(pay_id),
                TxKind::Charge,
                Money::zero(currency),
            )
        });
    }
    let state = if initial_status == TxStatus::Pending {
        PaymentState::Pending
    } else if reversed || initial_status == TxStatus::Error {
        PaymentState::Canceled
    } else if cap.is_positive() && cap.cmp_to(&auth).is_ok_and(|o| o.is_ge()) {
        PaymentState::Completed
    } else if cap.is_positive() {
        PaymentState::Partly
    } else {
        PaymentState::Pending
    };
    Ok(PspPayment {
        payment_id: pay_id.to_string(),
        state,
        method,
        currency,
        transactions,
        bank_details: None,
        totals_only: true,
    })
}
