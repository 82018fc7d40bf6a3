//! The ledger: one record per operation paybridge performs for an order, the operation's state
//! machine, and the order-level money invariants (architecture.md §3).
//!
//! Exactly-once effects on at-least-once plumbing rest on three things here:
//! - **Deterministic ids.** An operation's id is derived from what caused it (tenant, connection,
//!   order, ERP document, purpose). Planning the same document twice gives the same id, and the
//!   store's conditional insert turns the second plan into a no-op.
//! - **In-flight marks.** Before an external call the operation records which step it is about
//!   to take (`inflight`). A record found with an in-flight mark means the outcome is unknown:
//!   the next attempt asks the PSP/ERP what happened before it sends anything again.
//! - **Invariants before every money call and after every result**: Σcaptured ≤ authorized
//!   (+ tolerance), Σrefunded ≤ Σcaptured, Σreversed ≤ open authorization. A violation stops the
//!   operation with an error flag; it never moves money.
//!
//! States: `Planned → Running(claimed, lease) → Done`, or `Retry` (next attempt at) or `Failed`
//! (needs a human). Progress inside `Running` is `psp_done` then `erp_done` writes, which is the
//! claimed → psp_done → erp_done → done sequence of the architecture in two fields.

use crate::model::{BankDetails, Position};
use crate::money::{Money, MoneyError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Identity of an order in paybridge: tenant, ERP connection, ERP order number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    pub tenant: String,
    pub conn: String,
    pub order_id: String,
}

impl OrderKey {
    pub fn new(tenant: &str, conn: &str, order_id: &str) -> OrderKey {
        OrderKey {
            tenant: tenant.into(),
            conn: conn.into(),
            order_id: order_id.into(),
        }
    }

    /// The store partition key (`T#{tenant}#O#{conn}#{order}`).
    pub fn pk(&self) -> String {
        format!("T#{}#O#{}#{}", self.tenant, self.conn, self.order_id)
    }

    /// Inverse of [`OrderKey::pk`].
    pub fn from_pk(pk: &str) -> Option<OrderKey> {
        let rest = pk.strip_prefix("T#")?;
        let (tenant, rest) = rest.split_once("#O#")?;
        let (conn, order) = rest.split_once('#')?;
        Some(OrderKey::new(tenant, conn, order))
    }
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.conn, self.order_id)
    }
}

/// The ERP document an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Order,
    Invoice,
    CreditNote,
    Line,
}

/// Why an operation exists. With the document it makes the operation's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Standard mode: capture the whole order before release.
    CaptureOrder,
    /// HOLD → OPEN.
    Release,
    /// HOLD → OPEN with a shipping lock (check failed).
    ReleaseLocked,
    /// Prepayment: HOLD → OPEN with lock and transfer details.
    ReleasePrepayment,
    /// Prepayment received: clear our lock.
    ClearLock,
    /// Capture (charge) an invoice amount.
    CaptureInvoice,
    /// Invoice covered by an earlier capture: mark captured + booking only.
    BookInvoice,
    /// Report a shipment (legacy invoice secured).
    Shipment,
    /// Whole order cancelled: reverse the open authorization.
    CancelOrder,
    /// Whole order cancelled: refund what was captured.
    RefundOrder,
    /// Cancelled lines refunded (standard mode / charged in shop).
    RefundLine,
    /// Cancelled lines aggregated into one reversal or refund.
    CancelLines,
    /// Expert mode: close the payment after the last delivery.
    ClosePayment,
    /// Credit note refunded.
    RefundCredit,
    /// An ERP comment + error mark for a problem (written once per problem code).
    Problem,
    /// An ERP comment: the order was taken out of automation (document `{order}:{since}`).
    HandsOff,
    /// An ERP comment: the order is back in automation (the same document as its `HandsOff`).
    HandsOn,
    /// §3.6: a payment asked of the PSP for an order that came without one, its link e-mailed
    /// to the customer (document: the order).
    PaymentLink,
    /// §3.6: the same link e-mailed again by an operator (document `{order}#{n}`); the link is
    /// the first one, so it can never make a second payment.
    PaymentLinkResend,
    /// §3.6: an ERP comment: the customer did not complete a link payment (document: that
    /// payment's id); the link stays usable.
    PaymentLinkFailed,
}

/// One PSP money movement (or shipment report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum PspCall {
    Capture {
        amount: Money,
    },
    /// Reversal of (part of) the open authorization, or of a pending prepayment/invoice charge.
    Reverse {
        amount: Money,
    },
    Refund {
        amount: Money,
        reason: RefundReason,
    },
    Shipment {
        invoice_id: String,
    },
    /// §3.6: ask for a payment of `amount` from the customer (a payment page link); moves no
    /// money itself: the customer pays on the PSP's page.
    RequestPayment {
        amount: Money,
    },
}

impl PspCall {
    pub fn amount(&self) -> Option<Money> {
        match self {
            PspCall::Capture { amount }
            | PspCall::Reverse { amount }
            | PspCall::Refund { amount, .. }
            | PspCall::RequestPayment { amount } => Some(*amount),
            PspCall::Shipment { .. } => None,
        }
    }
}

/// Why money goes back to the customer; connectors map it onto their PSP's reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundReason {
    Cancel,
    Return,
    Credit,
}

/// One ERP write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum ErpWrite {
    /// HOLD → OPEN: the authorization is marked checked and the order released.
    Release,
    /// Per-order shipping lock.
    SetShippingLock,
    ClearShippingLock,
    /// Mark the invoice captured with the invoice booking event; this books the payment in the
    /// customer account in the same ERP call.
    MarkInvoiceCaptured {
        invoice_id: String,
        event_code: String,
        amount: Money,
    },
    /// A manual booking in the customer account; refunds are negative.
    ManualBooking {
        amount: Money,
        event_code: String,
        document: String,
    },
    /// Prepayment transfer data into the customer-service fields.
    TransferDetails {
        details: BankDetails,
    },
    /// An order comment (each ERP connector names the call it uses).
    Comment {
        text: String,
    },
}

/// A planned operation as the engine emits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub doc_kind: DocKind,
    pub doc_id: String,
    pub purpose: Purpose,
    pub psp: Option<PspCall>,
    pub erp: Vec<ErpWrite>,
}

impl Plan {
    /// The deterministic id of this plan for an order.
    pub fn op_id(&self, order: &OrderKey) -> String {
        op_id(order, self.doc_kind, &self.doc_id, self.purpose)
    }
}

/// Deterministic operation id: `{tenant}/{conn}/{order}/{doc kind}:{doc id}/{purpose}`.
pub fn op_id(order: &OrderKey, kind: DocKind, doc_id: &str, purpose: Purpose) -> String {
    let k = serde_json::to_value(kind).ok();
    let p = serde_json::to_value(purpose).ok();
    let s = |v: Option<serde_json::Value>| {
        v.and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    format!("{order}/{}:{doc_id}/{}", s(k), s(p))
}

/// The short reference sent to the PSP with a money call (the PSP's merchant reference field):
/// `pb` + 24 hex digits of SHA-256 of the operation id. Stable across retries.
pub fn psp_reference(op_id: &str) -> String {
    let h = Sha256::digest(op_id.as_bytes());
    format!("pb{}", &hex::encode(h)[..24])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    Planned,
    Running,
    /// Waiting for `next_attempt_at`.
    Retry,
    Done,
    /// Needs a human.
    Failed,
    /// Never started, and never will: its order was taken out of automation. The engine treats
    /// it as never planned, so the same plan can be made again once the order is back.
    Cancelled,
}

impl OpStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OpStatus::Done | OpStatus::Failed | OpStatus::Cancelled
        )
    }
}

/// The external step an operation is about to take (or took without recording the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Psp,
    Erp { index: usize },
}

/// A ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub order: OrderKey,
    pub plan: Plan,
    pub status: OpStatus,
    pub psp_done: bool,
    /// PSP transaction id of the money movement.
    pub psp_tx: Option<String>,
    /// Number of ERP writes completed (prefix of `plan.erp`).
    pub erp_done: usize,
    /// Set before an external call, cleared when its result is recorded.
    pub inflight: Option<Step>,
    /// When the in-flight call was last sent: until the PSP's processing window after it has
    /// passed, a call not found at the PSP may still appear there.
    #[serde(default)]
    pub inflight_since: Option<DateTime<Utc>>,
    /// Attempts at the step in progress (a step reached during an attempt starts at 1). The
    /// limit applies to sending: an attempt that only looks (reconciles, waits for the PSP to
    /// settle) never leads to giving up while a call's outcome is unknown.
    pub attempts: u32,
    /// Finished, but the order has not been evaluated since (release after capture, error flag
    /// after failure): the operation stays in the sweep's index until that evaluation ran.
    #[serde(default)]
    pub follow_up: bool,
    pub lease_until: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Store version this record was read at (not part of the stored body's meaning).
    #[serde(skip)]
    pub version: u64,
    /// Changed since it was last saved (not stored): the orchestration saves a step's result
    /// together with the next transition, and before anything leaves the process.
    #[serde(skip)]
    pub unsaved: bool,
    /// History lines of transitions since the last save (not stored here): written as the
    /// order's history entries in the same commit as the operation.
    #[serde(skip)]
    pub unsaved_history: Vec<Transition>,
}

/// One line of the order's history that an operation's transition adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub what: String,
    /// PSP transaction id or ERP reference, when there is one.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("operation {0} is finished")]
    Finished(String),
    #[error("operation {0} is leased until {1}")]
    Leased(String, DateTime<Utc>),
    #[error("operation {0} is not due before {1}")]
    NotDue(String, DateTime<Utc>),
    #[error("operation {id}: {what}")]
    Invalid { id: String, what: &'static str },
}

impl Operation {
    pub fn new(order: &OrderKey, plan: Plan, now: DateTime<Utc>) -> Operation {
        Operation {
            id: plan.op_id(order),
            order: order.clone(),
            plan,
            status: OpStatus::Planned,
            psp_done: false,
            psp_tx: None,
            erp_done: 0,
            inflight: None,
            inflight_since: None,
            attempts: 0,
            follow_up: false,
            lease_until: None,
            next_attempt_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            version: 0,
            unsaved: false,
            unsaved_history: Vec::new(),
        }
    }

    /// Adds a history line, saved with the operation's next save.
    pub fn record(&mut self, at: DateTime<Utc>, what: String, reference: Option<String>) {
        self.unsaved = true;
        self.unsaved_history.push(Transition {
            at,
            what,
            reference,
        });
    }

    /// Money moved by this operation once done: its PSP call's amount.
    pub fn moved(&self) -> Option<&PspCall> {
        self.plan.psp.as_ref().filter(|_| self.psp_done)
    }

    /// Takes the operation for one attempt. A running operation whose lease expired can be
    /// taken over (its in-flight mark stays, so the new holder reconciles first).
    pub fn claim(
        &mut self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<(), TransitionError> {
        match self.status {
            OpStatus::Done | OpStatus::Failed | OpStatus::Cancelled => {
                return Err(TransitionError::Finished(self.id.clone()));
            }
            OpStatus::Running => {
                if let Some(until) = self.lease_until
                    && until > now
                {
                    return Err(TransitionError::Leased(self.id.clone(), until));
                }
            }
            OpStatus::Retry => {
                if let Some(at) = self.next_attempt_at
                    && at > now
                {
                    return Err(TransitionError::NotDue(self.id.clone(), at));
                }
            }
            OpStatus::Planned => {}
        }
        self.status = OpStatus::Running;
        self.attempts += 1;
        self.lease_until = Some(now + lease);
        self.next_attempt_at = None;
        self.updated_at = now;
        Ok(())
    }

    fn running(&self, what: &'static str) -> Result<(), TransitionError> {
        if self.status != OpStatus::Running {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what,
            });
        }
        Ok(())
    }

    /// Marks the next external step as in flight (persist before calling out).
    pub fn begin(&mut self, step: Step, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.running("begin outside a claim")?;
        let expected = if !self.psp_done && self.plan.psp.is_some() {
            Step::Psp
        } else {
            Step::Erp {
                index: self.erp_done,
            }
        };
        if step != expected {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what: "step out of order",
            });
        }
        self.inflight = Some(step);
        self.inflight_since = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// The PSP call is done (now or found on reconciliation).
    pub fn psp_succeeded(
        &mut self,
        tx_id: String,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.running("psp result outside a claim")?;
        if self.plan.psp.is_none() || self.psp_done {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what: "no pending psp step",
            });
        }
        self.psp_done = true;
        self.psp_tx = Some(tx_id);
        self.inflight = None;
        self.attempts = 1;
        self.updated_at = now;
        Ok(())
    }

    /// ERP write `erp_done` is done (now or found on read-back).
    pub fn erp_succeeded(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.running("erp result outside a claim")?;
        if self.plan.psp.is_some() && !self.psp_done {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what: "erp before psp",
            });
        }
        if self.erp_done >= self.plan.erp.len() {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what: "no pending erp step",
            });
        }
        self.erp_done += 1;
        self.inflight = None;
        self.attempts = 1;
        self.updated_at = now;
        Ok(())
    }

    /// The step still to take, if any.
    pub fn next_step(&self) -> Option<Step> {
        if self.plan.psp.is_some() && !self.psp_done {
            Some(Step::Psp)
        } else if self.erp_done < self.plan.erp.len() {
            Some(Step::Erp {
                index: self.erp_done,
            })
        } else {
            None
        }
    }

    pub fn finish(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.running("finish outside a claim")?;
        if self.next_step().is_some() {
            return Err(TransitionError::Invalid {
                id: self.id.clone(),
                what: "steps remain",
            });
        }
        self.status = OpStatus::Done;
        self.follow_up = true;
        self.lease_until = None;
        self.updated_at = now;
        Ok(())
    }

    /// Try again at `at`. The in-flight mark is kept: an unknown outcome stays unknown until
    /// reconciled.
    pub fn retry_at(&mut self, at: DateTime<Utc>, error: String, now: DateTime<Utc>) {
        self.status = OpStatus::Retry;
        self.next_attempt_at = Some(at);
        self.lease_until = None;
        self.last_error = Some(error);
        self.updated_at = now;
    }

    /// Stop and ask a human. Only for outcomes known not to have moved money, or after money
    /// moved but a later step is impossible.
    /// Whether anything of it may have left the process: a call sent or in flight, an ERP
    /// write done.
    pub fn started(&self) -> bool {
        self.psp_done || self.erp_done > 0 || self.inflight.is_some()
    }

    /// Cancels an operation that has not started ([`Operation::started`]); `false` (and
    /// nothing changed) when it has, or when it is finished.
    pub fn cancel(&mut self, why: &str, now: DateTime<Utc>) -> bool {
        if self.started() || self.status.is_terminal() {
            return false;
        }
        self.status = OpStatus::Cancelled;
        self.lease_until = None;
        self.next_attempt_at = None;
        self.last_error = Some(why.to_string());
        self.updated_at = now;
        self.record(now, format!("cancelled: {why}"), None);
        true
    }

    pub fn fail(&mut self, error: String, now: DateTime<Utc>) {
        self.status = OpStatus::Failed;
        self.follow_up = true;
        self.lease_until = None;
        self.next_attempt_at = None;
        self.last_error = Some(error);
        self.updated_at = now;
    }
}

/// A broken money invariant. Never leads to a money call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error(
        "capture of {amount} exceeds the open authorization {open} (tolerance {tolerance} minor units)"
    )]
    CaptureExceedsAuthorization {
        amount: Money,
        open: Money,
        tolerance: u32,
    },
    #[error("refund of {amount} exceeds the refundable {refundable}")]
    RefundExceedsCaptured { amount: Money, refundable: Money },
    #[error("reversal of {amount} exceeds the open authorization {open}")]
    ReversalExceedsOpen { amount: Money, open: Money },
    #[error("amount must be positive, got {0}")]
    NotPositive(Money),
    #[error("PSP position broken: {0}")]
    Position(String),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Checks a money call against the current PSP position before sending it.
pub fn check_call(
    call: &PspCall,
    pos: &Position,
    tolerance: u32,
) -> Result<(), InvariantViolation> {
    if let Some(a) = call.amount()
        && !a.is_positive()
    {
        return Err(InvariantViolation::NotPositive(a));
    }
    match call {
        PspCall::Capture { amount } => {
            let open = pos.remaining()?;
            if !amount.le_with_tolerance(&open, tolerance)? {
                return Err(InvariantViolation::CaptureExceedsAuthorization {
                    amount: *amount,
                    open,
                    tolerance,
                });
            }
        }
        PspCall::Reverse { amount } => {
            let open = pos.remaining()?;
            if amount.cmp_to(&open)?.is_gt() {
                return Err(InvariantViolation::ReversalExceedsOpen {
                    amount: *amount,
                    open,
                });
            }
        }
        PspCall::Refund { amount, .. } => {
            let refundable = pos.refundable()?;
            if amount.cmp_to(&refundable)?.is_gt() {
                return Err(InvariantViolation::RefundExceedsCaptured {
                    amount: *amount,
                    refundable,
                });
            }
        }
        PspCall::Shipment { .. } | PspCall::RequestPayment { .. } => {}
    }
    Ok(())
}

/// Checks a position after a result: Σcaptured ≤ authorized − reversed (+ tolerance),
/// Σrefunded ≤ Σcaptured.
pub fn check_position(pos: &Position, tolerance: u32) -> Result<(), InvariantViolation> {
    let cap_limit = pos.authorized.checked_sub(pos.reversed)?;
    if !pos.charged.le_with_tolerance(&cap_limit, tolerance)? {
        return Err(InvariantViolation::Position(format!(
            "captured {} > authorized {} − reversed {}",
            pos.charged, pos.authorized, pos.reversed
        )));
    }
    if pos.refunded.cmp_to(&pos.charged)?.is_gt() {
        return Err(InvariantViolation::Position(format!(
            "refunded {} > captured {}",
            pos.refunded, pos.charged
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
