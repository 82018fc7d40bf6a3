//! Problems the engine raises on an order (behaviour.md §4): each one a [`Problem`] with its
//! stable code, the text an operator reads, and what the operator should do about it.
//!
//! The code is what is stored on the order and shown on the error page; repeats of the same
//! problem carry the same code, so they are recognised (one ERP comment, one e-mail). Codes that
//! concern one document carry its id after a `:` (`capture_exceeds:R-1`).

use crate::ledger::Purpose;
use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Needs a human (dashboard error mark, e-mail).
    Error,
    /// Worth knowing, nothing to do yet.
    Hint,
}

/// A problem mark on an order, as stored. `code` is stable so repeats are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub severity: Severity,
    pub code: String,
    pub message: String,
}

/// The kind of a problem: the part of its code before any `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Money,
    PspUnavailable,
    PaymentMismatch,
    CurrencyMismatch,
    Invariant,
    AuthorizationCheck,
    Pending,
    NoBankDetails,
    PartlyPaid,
    Chargeback,
    CaptureExceeds,
    InvoicesExceedOrder,
    ShippedBeforeReceipt,
    InvoicesExceedReceived,
    RefundExceeds,
    RefundWaits,
    CancelLinesExceed,
    CreditSettled,
    ForeignCapture,
    OpFailed,
    AuthorizationExpiring,
    AuthorizationExpired,
    PendingTooLong,
    CapturedElsewhere,
    HandsOff,
    PaymentLinkOpen,
    PaymentLinkUnpaid,
    PaymentLinkFailed,
}

const LOOK: &str =
    "Look at the order in the dashboard and its history; mark the problem solved when done.";

/// Every code: its text form, severity and the operator's action (a data table).
const CODES: &[(Code, &str, Severity, &str)] = &[
    (Code::Money, "money", Severity::Error, LOOK),
    (
        Code::PspUnavailable,
        "psp_unavailable",
        Severity::Hint,
        LOOK,
    ),
    (
        Code::PaymentMismatch,
        "payment_mismatch",
        Severity::Error,
        LOOK,
    ),
    (
        Code::CurrencyMismatch,
        "currency_mismatch",
        Severity::Error,
        LOOK,
    ),
    (Code::Invariant, "invariant", Severity::Error, LOOK),
    (
        Code::AuthorizationCheck,
        "authorization_check",
        Severity::Error,
        "Check the payment in the PSP portal; ship only when it is clear, then remove the shipping lock.",
    ),
    (Code::Pending, "pending", Severity::Hint, LOOK),
    (Code::NoBankDetails, "no_bank_details", Severity::Hint, LOOK),
    (Code::PartlyPaid, "partly_paid", Severity::Hint, LOOK),
    (Code::Chargeback, "chargeback", Severity::Error, LOOK),
    (
        Code::CaptureExceeds,
        "capture_exceeds",
        Severity::Error,
        LOOK,
    ),
    (
        Code::InvoicesExceedOrder,
        "invoices_exceed_order",
        Severity::Error,
        LOOK,
    ),
    (
        Code::ShippedBeforeReceipt,
        "shipped_before_receipt",
        Severity::Error,
        "Book the payment by hand once it has arrived.",
    ),
    (
        Code::InvoicesExceedReceived,
        "invoices_exceed_received",
        Severity::Error,
        "Compare the invoices with the money received; book the payment by hand and settle the difference with the customer.",
    ),
    (Code::RefundExceeds, "refund_exceeds", Severity::Error, LOOK),
    (Code::RefundWaits, "refund_waits", Severity::Hint, LOOK),
    (
        Code::CancelLinesExceed,
        "cancel_lines_exceed",
        Severity::Error,
        LOOK,
    ),
    (
        Code::CreditSettled,
        "credit_settled",
        Severity::Error,
        "Set \"no DTAUS\" on credit notes of this payment method; refund by hand if the customer is owed money.",
    ),
    (
        Code::ForeignCapture,
        "foreign_capture",
        Severity::Error,
        "Refund this credit note by hand in the PSP portal and book it.",
    ),
    (
        Code::OpFailed,
        "op_failed",
        Severity::Error,
        "See the order history; fix the cause and mark the problem solved.",
    ),
    (
        Code::AuthorizationExpiring,
        "authorization_expiring",
        Severity::Hint,
        "Ship and invoice before the authorization expires, or ask the customer for a new payment.",
    ),
    (
        Code::AuthorizationExpired,
        "authorization_expired",
        Severity::Error,
        "Ask the customer for a new payment (or capture by hand if the PSP portal still allows it); mark the problem solved when done.",
    ),
    (
        Code::PendingTooLong,
        "pending_too_long",
        Severity::Error,
        "Check the payment in the PSP portal; cancel the order or release it by hand when the payment is clear.",
    ),
    (
        Code::CapturedElsewhere,
        "captured_elsewhere",
        Severity::Hint,
        "Nothing to do if the invoice was captured by hand; otherwise capture it in the PSP portal.",
    ),
    (
        Code::HandsOff,
        "hands_off",
        Severity::Hint,
        "The order is out of automation: handle it by hand, then put it back with `paybridge order hands-on`.",
    ),
    (
        Code::PaymentLinkOpen,
        "payment_link_open",
        Severity::Hint,
        "Nothing to do yet: the customer has the payment link.",
    ),
    (
        Code::PaymentLinkUnpaid,
        "payment_link_unpaid",
        Severity::Error,
        "Ask the customer; e-mail the same link again with `paybridge order resend-link` (it can never be paid twice), or cancel the order.",
    ),
    (
        Code::PaymentLinkFailed,
        "payment_link_failed",
        Severity::Hint,
        "The customer did not complete a payment; the link stays usable. Nothing to do unless the customer asks.",
    ),
];

impl Code {
    fn row(self) -> &'static (Code, &'static str, Severity, &'static str) {
        CODES
            .iter()
            .find(|r| r.0 == self)
            .expect("every code is in the table")
    }

    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    pub fn severity(self) -> Severity {
        self.row().2
    }

    /// What an operator should do about it.
    pub fn action(self) -> &'static str {
        self.row().3
    }

    /// The kind of a stored code (`capture_exceeds:R-1` → `CaptureExceeds`).
    pub fn of(code: &str) -> Option<Code> {
        let base = code.split(':').next().unwrap_or(code);
        CODES.iter().find(|r| r.1 == base).map(|r| r.0)
    }
}

/// What an operator should do about a stored problem code (unknown codes get the general
/// advice).
pub fn action_for(code: &str) -> &'static str {
    Code::of(code).map_or(LOOK, Code::action)
}

/// One problem, with the facts its text needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The amounts could not be computed (currency mix, overflow).
    Money(String),
    PspUnavailable,
    PaymentMismatch {
        psp: String,
        order: String,
    },
    CurrencyMismatch,
    /// A money invariant of the PSP position is broken.
    Invariant(String),
    /// The authorization check failed: the order was released with shipping lock.
    AuthorizationCheck(String),
    Pending(String),
    NoBankDetails,
    PartlyPaid,
    Chargeback,
    CaptureExceeds {
        invoice: String,
        amount: Money,
        open: Money,
    },
    InvoicesExceedOrder {
        invoiced: Money,
        total: Money,
        charged: Money,
    },
    ShippedBeforeReceipt {
        invoice: String,
    },
    InvoicesExceedReceived {
        invoiced: Money,
        received: Money,
    },
    /// A cancelled line or a credit note exceeds what can be refunded.
    RefundExceeds {
        doc: String,
        what: &'static str,
        amount: Money,
        refundable: Money,
    },
    RefundWaits {
        credit: String,
    },
    CancelLinesExceed {
        amount: Money,
        left: Money,
        what: &'static str,
    },
    CreditSettled {
        credit: String,
    },
    /// A credit note returning money paybridge did not capture: `invoice` names what it
    /// returns (the linked invoice, or the invoices captured before paybridge).
    ForeignCapture {
        credit: String,
        invoice: String,
    },
    AuthorizationExpiring {
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
        open: Money,
    },
    /// Expired with `open` still to capture; `invoices` were not captured because of it.
    AuthorizationExpired {
        at: DateTime<Utc>,
        expired: DateTime<Utc>,
        open: Money,
        invoices: Vec<String>,
    },
    PendingTooLong {
        since: DateTime<Utc>,
        hours: u32,
    },
    /// An invoice the ERP marks captured/paid that paybridge did not capture.
    CapturedElsewhere {
        invoice: String,
    },
    HandsOff {
        since: DateTime<Utc>,
    },
    /// §3.6: a payment link was e-mailed and is not paid yet.
    PaymentLinkOpen {
        since: DateTime<Utc>,
    },
    /// §3.6: the link was not paid within the method's `pending_error_after_hours`.
    PaymentLinkUnpaid {
        since: DateTime<Utc>,
        hours: u32,
    },
    /// §3.6: a payment started on the link failed or was cancelled by the customer.
    PaymentLinkFailed {
        payment: String,
    },
    /// An operation failed for good; `op` names it (`doc@purpose` of its id).
    OpFailed {
        op: String,
        purpose: Purpose,
        doc: String,
        why: String,
    },
}

impl Problem {
    pub fn kind(&self) -> Code {
        match self {
            Problem::Money(_) => Code::Money,
            Problem::PspUnavailable => Code::PspUnavailable,
            Problem::PaymentMismatch { .. } => Code::PaymentMismatch,
            Problem::CurrencyMismatch => Code::CurrencyMismatch,
            Problem::Invariant(_) => Code::Invariant,
            Problem::AuthorizationCheck(_) => Code::AuthorizationCheck,
            Problem::Pending(_) => Code::Pending,
            Problem::NoBankDetails => Code::NoBankDetails,
            Problem::PartlyPaid => Code::PartlyPaid,
            Problem::Chargeback => Code::Chargeback,
            Problem::CaptureExceeds { .. } => Code::CaptureExceeds,
            Problem::InvoicesExceedOrder { .. } => Code::InvoicesExceedOrder,
            Problem::ShippedBeforeReceipt { .. } => Code::ShippedBeforeReceipt,
            Problem::InvoicesExceedReceived { .. } => Code::InvoicesExceedReceived,
            Problem::RefundExceeds { .. } => Code::RefundExceeds,
            Problem::RefundWaits { .. } => Code::RefundWaits,
            Problem::CancelLinesExceed { .. } => Code::CancelLinesExceed,
            Problem::CreditSettled { .. } => Code::CreditSettled,
            Problem::ForeignCapture { .. } => Code::ForeignCapture,
            Problem::OpFailed { .. } => Code::OpFailed,
            Problem::AuthorizationExpiring { .. } => Code::AuthorizationExpiring,
            Problem::AuthorizationExpired { .. } => Code::AuthorizationExpired,
            Problem::PendingTooLong { .. } => Code::PendingTooLong,
            Problem::CapturedElsewhere { .. } => Code::CapturedElsewhere,
            Problem::HandsOff { .. } => Code::HandsOff,
            Problem::PaymentLinkOpen { .. } => Code::PaymentLinkOpen,
            Problem::PaymentLinkUnpaid { .. } => Code::PaymentLinkUnpaid,
            Problem::PaymentLinkFailed { .. } => Code::PaymentLinkFailed,
        }
    }

    pub fn severity(&self) -> Severity {
        self.kind().severity()
    }

    /// The document a per-document code names after its `:`.
    fn subject(&self) -> Option<&str> {
        match self {
            Problem::CaptureExceeds { invoice, .. }
            | Problem::ShippedBeforeReceipt { invoice }
            | Problem::CapturedElsewhere { invoice } => Some(invoice),
            Problem::RefundExceeds { doc, .. } => Some(doc),
            Problem::RefundWaits { credit }
            | Problem::CreditSettled { credit }
            | Problem::ForeignCapture { credit, .. } => Some(credit),
            Problem::OpFailed { op, .. } => Some(op),
            Problem::PaymentLinkFailed { payment } => Some(payment),
            _ => None,
        }
    }

    /// The stored code: the kind, and the document for per-document problems.
    pub fn code(&self) -> String {
        match self.subject() {
            Some(s) => format!("{}:{s}", self.kind().as_str()),
            None => self.kind().as_str().to_string(),
        }
    }

    /// What the operator reads (order comment, e-mail, dashboard).
    pub fn text(&self) -> String {
        match self {
            Problem::Money(e) => format!("amounts inconsistent: {e}"),
            Problem::PspUnavailable => "the PSP payment could not be read yet".into(),
            Problem::PaymentMismatch { psp, order } => {
                format!("PSP payment {psp} does not belong to this order ({order})")
            }
            Problem::CurrencyMismatch => "order and PSP payment currencies differ".into(),
            Problem::Invariant(v) | Problem::AuthorizationCheck(v) => v.clone(),
            Problem::Pending(why) => {
                format!("{why}; the order stays on HOLD and is checked again")
            }
            Problem::NoBankDetails => {
                "the PSP gave no transfer details for the customer's payment".into()
            }
            Problem::PartlyPaid => "the prepayment is only partly received".into(),
            Problem::Chargeback => "the customer charged the payment back".into(),
            Problem::CaptureExceeds {
                invoice,
                amount,
                open,
            } => format!("invoice {invoice} ({amount}) exceeds the open authorization ({open})"),
            Problem::InvoicesExceedOrder {
                invoiced,
                total,
                charged,
            } => format!(
                "the invoices ({invoiced}) exceed the order total ({total}) or the captured amount ({charged})"
            ),
            Problem::ShippedBeforeReceipt { invoice } => format!(
                "invoice {invoice} was shipped before the prepayment was received: no booking, book it manually"
            ),
            Problem::InvoicesExceedReceived { invoiced, received } => format!(
                "the invoices ({invoiced}) exceed the prepayment received ({received}): not booked, book by hand"
            ),
            Problem::RefundExceeds {
                doc,
                what,
                amount,
                refundable,
            } => format!("{what} {doc} ({amount}) exceeds the refundable amount ({refundable})"),
            Problem::RefundWaits { credit } => {
                format!("credit note {credit} waits until the money it returns has arrived")
            }
            Problem::CancelLinesExceed { amount, left, what } => {
                format!("cancelled lines ({amount}) exceed the {what} amount ({left})")
            }
            Problem::CreditSettled { credit } => format!(
                "credit note {credit} is already settled in the ERP (set \"no DTAUS\"); nothing was refunded"
            ),
            Problem::ForeignCapture { credit, invoice } => format!(
                "credit note {credit} returns money of {invoice}, captured before or outside paybridge: nothing was refunded, refund it by hand"
            ),
            Problem::AuthorizationExpiring { at, expires, open } => format!(
                "the authorization of {} expires on {}: {open} is still to capture",
                day(at),
                day(expires)
            ),
            Problem::AuthorizationExpired {
                at,
                expired,
                open,
                invoices,
            } => expired_text(at, expired, *open, invoices),
            Problem::PendingTooLong { since, hours } => format!(
                "the payment has been pending since {} (more than {hours} h): the order stays on HOLD",
                minute(since)
            ),
            Problem::CapturedElsewhere { invoice } => format!(
                "invoice {invoice} is marked paid in the ERP already: paybridge did not capture it"
            ),
            Problem::HandsOff { since } => format!(
                "taken out of automation by an operator on {}: paybridge plans nothing for this order",
                minute(since)
            ),
            Problem::PaymentLinkOpen { since } => format!(
                "a payment link was e-mailed to the customer on {}; not paid yet",
                minute(since)
            ),
            Problem::PaymentLinkUnpaid { since, hours } => format!(
                "the payment link e-mailed on {} is not paid after {hours} h",
                minute(since)
            ),
            Problem::PaymentLinkFailed { payment } => format!(
                "payment {payment} started on the link failed or was cancelled by the customer; the link stays usable"
            ),
            Problem::OpFailed {
                purpose, doc, why, ..
            } => {
                format!("{purpose:?} for {doc} failed: {why}")
            }
        }
    }

    /// The stored form.
    pub fn flag(&self) -> Flag {
        Flag {
            severity: self.severity(),
            code: self.code(),
            message: self.text(),
        }
    }
}

fn day(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn minute(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn expired_text(
    at: &DateTime<Utc>,
    expired: &DateTime<Utc>,
    open: Money,
    inv: &[String],
) -> String {
    let held = match inv {
        [] => String::new(),
        _ => format!("; no capture sent for invoice {}", inv.join(", ")),
    };
    format!(
        "the authorization of {} expired on {} with {open} not captured (the PSP refuses a capture now){held}",
        day(at),
        day(expired)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_row_and_parses_back() {
        for (code, text, _, action) in CODES {
            assert_eq!(CODES.iter().filter(|r| r.0 == *code).count(), 1);
            assert_eq!(Code::of(text), Some(*code));
            assert_eq!(Code::of(&format!("{text}:R-1")), Some(*code));
            assert!(!action.is_empty());
        }
        assert_eq!(Code::of("no_such_code"), None);
        assert_eq!(action_for("no_such_code"), LOOK);
    }

    #[test]
    fn per_document_codes_name_the_document() {
        let p = Problem::ShippedBeforeReceipt {
            invoice: "R-7".into(),
        };
        assert_eq!(p.code(), "shipped_before_receipt:R-7");
        assert_eq!(p.severity(), Severity::Error);
        assert_eq!(Problem::PartlyPaid.code(), "partly_paid");
        assert_eq!(Problem::PartlyPaid.severity(), Severity::Hint);
    }
}
