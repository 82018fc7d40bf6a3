//! The decision engine: a pure function from (ERP facts, PSP view, ledger, config, now) to the
//! operations that should exist for an order, plus error/hint flags (behaviour.md §2–§3.5, §4).
//!
//! No IO, no clock, no randomness: `now` is an argument and the output depends on the input
//! only. The engine is called wherever facts change (poll, webhook, job result) and re-planning
//! is always safe: every plan has a deterministic id, plans already in the ledger are not emitted
//! again, and amounts are budgeted against the PSP position *and* every money operation still
//! in progress, so two plans can never spend the same authorization or capture twice.
//!
//! Steps that must happen in order (standard mode: capture, then release; prepayment: lock,
//! then clear) come out of repeated calls: the next step is only planned once the ledger shows
//! the previous one done.
//!
//! One file per flow of behaviour.md:
//!
//! | file | flow |
//! |---|---|
//! | [`release`] | §3.1 authorization check and release (standard mode: capture first) |
//! | [`prepayment`] | §3.2 shipping lock cleared when the transfer arrived |
//! | [`capture`] | §3.3 capture per invoice, payment closed after the last delivery |
//! | [`booking`] | §3.3 invoices booked in the customer account (verify-and-book families) |
//! | [`cancellation`] | §3.4 whole-order and line cancellations |
//! | [`credit_note`] | §3.5 credit notes refunded and booked |
//! | [`comments`] | §4 one ERP comment per action, errors that stay until solved |
//! | [`problems`] | §4 the problem codes, their texts and the operator's action |
//! | [`budget`] | money still free to move after everything in progress |
//! | [`authorization`] | authorizations expire: hint before, error after, no capture then |
//! | [`hands_off`] | an order an operator took out of automation: nothing planned |
//! | [`payment_link`] | §3.6 an order without a payment: a payment link asked for and waited on |

pub mod authorization;
mod booking;
mod budget;
mod cancellation;
mod capture;
mod comments;
mod credit_note;
mod hands_off;
mod payment_link;
mod prepayment;
pub mod problems;
mod release;

pub use problems::{Code, Flag, Problem, Severity};

use crate::config::{MethodConfig, Mode};
use crate::ledger::{DocKind, ErpWrite, OpStatus, Operation, OrderKey, Plan, PspCall, Purpose};
use crate::model::{ErpOrder, MethodFamily, OrderStatus, PaymentState, PspPayment};
use crate::money::MoneyError;
use chrono::{DateTime, Utc};

/// Everything the engine looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub key: &'a OrderKey,
    pub order: &'a ErpOrder,
    /// The PSP's view, fetched fresh by the caller; `None` when there is no payment id or the
    /// PSP could not be asked (then nothing money-related is decided).
    pub psp: Option<&'a PspPayment>,
    /// All operations of this order.
    pub ledger: &'a [Operation],
    /// The active payment-method config for the order, if any.
    pub config: Option<&'a MethodConfig>,
    pub now: DateTime<Utc>,
    /// When paybridge first saw the order (a pending payment's wait is counted from it).
    pub first_seen: DateTime<Utc>,
    /// Since when an operator has taken the order out of automation, if so.
    pub hands_off: Option<DateTime<Utc>>,
}

/// What the engine decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// New operations to insert (none of them is in the ledger yet).
    pub plans: Vec<Plan>,
    /// The order's current problems.
    pub flags: Vec<Flag>,
    /// Facts worth recording in the order history (e.g. a rounding difference absorbed).
    pub notes: Vec<String>,
    /// When the decision may change by the clock alone (a pending payment's deadline, an
    /// authorization's hint or expiry): the order is to be evaluated again then. Always after
    /// `now`.
    pub recheck_at: Option<DateTime<Utc>>,
}

impl Decision {
    pub fn errors(&self) -> impl Iterator<Item = &Flag> {
        self.flags.iter().filter(|f| f.severity == Severity::Error)
    }
}

/// Decides what should happen to one order now.
pub fn decide(input: &Input<'_>) -> Decision {
    let mut cx = Cx {
        input,
        out: Decision::default(),
    };
    if let Some(since) = input.hands_off {
        cx.hands_off(since);
    } else {
        cx.back_on();
        if let Err(e) = cx.run() {
            cx.problem(Problem::Money(e.to_string()));
        }
    }
    cx.failed_ops();
    cx.out
}

/// One decision in the making: the input and what has been decided so far.
struct Cx<'i, 'a> {
    input: &'i Input<'a>,
    out: Decision,
}

/// The facts every flow of one decision reads.
struct Facts<'p> {
    p: &'p PspPayment,
    family: MethodFamily,
    mode: Mode,
    cfg: &'p MethodConfig,
}

impl<'a> Cx<'_, 'a> {
    fn order(&self) -> &'a ErpOrder {
        self.input.order
    }

    /// The ledger's operation for (doc, purpose), if planned before. A cancelled one (never
    /// started: the order was taken out of automation) counts as never planned.
    fn op(&self, kind: DocKind, doc_id: &str, purpose: Purpose) -> Option<&'a Operation> {
        let id = crate::ledger::op_id(self.input.key, kind, doc_id, purpose);
        self.input
            .ledger
            .iter()
            .find(|o| o.id == id && o.status != OpStatus::Cancelled)
    }

    /// Asks to be evaluated again at `at` (the earliest such time wins; never now or before).
    fn recheck(&mut self, at: DateTime<Utc>) {
        if at > self.input.now && self.out.recheck_at.is_none_or(|r| at < r) {
            self.out.recheck_at = Some(at);
        }
    }

    /// Planned before (in the ledger) or in this decision.
    fn has_op(&self, kind: DocKind, doc_id: &str, purpose: Purpose) -> bool {
        self.op(kind, doc_id, purpose).is_some()
            || self
                .out
                .plans
                .iter()
                .any(|p| p.doc_kind == kind && p.doc_id == doc_id && p.purpose == purpose)
    }

    fn done(&self, kind: DocKind, doc_id: &str, purpose: Purpose) -> bool {
        self.op(kind, doc_id, purpose)
            .is_some_and(|o| o.status == OpStatus::Done)
    }

    /// Plans an operation unless it exists already.
    fn plan(
        &mut self,
        kind: DocKind,
        doc_id: &str,
        purpose: Purpose,
        psp: Option<PspCall>,
        erp: Vec<ErpWrite>,
    ) {
        if self.has_op(kind, doc_id, purpose) {
            return;
        }
        self.out.plans.push(Plan {
            doc_kind: kind,
            doc_id: doc_id.to_string(),
            purpose,
            psp,
            erp,
        });
    }

    fn run(&mut self) -> Result<(), MoneyError> {
        let Some(f) = self.facts() else {
            return Ok(());
        };
        let o = self.order();
        let pos = f.p.position()?;
        if let Err(v) = crate::ledger::check_position(&pos, f.cfg.rounding_tolerance) {
            self.problem(Problem::Invariant(v.to_string()));
            return Ok(());
        }
        if o.status == OrderStatus::Hold && !o.fully_cancelled() && !self.released() {
            return self.release(&f, &pos);
        }
        if f.family == MethodFamily::Prepayment {
            self.prepayment(f.p)?;
        }
        let mut budget = self.budget(&pos)?;
        let lifetime = self.lifetime(&f, budget.open);
        self.invoices(&f, &pos, &mut budget, lifetime)?;
        self.cancellations(&f, &mut budget)?;
        self.credit_notes(&f, &mut budget)?;
        if matches!(f.p.state, PaymentState::Chargeback) {
            self.problem(Problem::Chargeback);
        }
        Ok(())
    }

    /// The facts a money decision needs, or `None` when none can be made (manual order, no
    /// config, no payment id, PSP not readable, payment or currency not the order's).
    fn facts(&mut self) -> Option<Facts<'a>> {
        let o = self.order();
        let link = self.input.config.is_some_and(|c| c.mode == Mode::Link);
        // §3.1.5: manual / exchange orders are not ours: no lock, no error — unless their
        // method asks for payments by link (§3.6): those orders come without a payment.
        if o.is_manual() && !link {
            return None;
        }
        let cfg = self.input.config?;
        let Some(pid) = o.psp_payment_id.as_deref().filter(|s| !s.is_empty()) else {
            if link {
                self.payment_link(cfg);
            } else if o.status == OrderStatus::Hold {
                self.release_locked("the order has no PSP payment id");
            }
            return None;
        };
        let Some(p) = self.input.psp else {
            self.problem(Problem::PspUnavailable);
            return None;
        };
        if p.payment_id != pid {
            self.problem(Problem::PaymentMismatch {
                psp: p.payment_id.clone(),
                order: pid.to_string(),
            });
            return None;
        }
        if p.currency != o.total.currency() {
            if o.status == OrderStatus::Hold {
                self.release_locked(&format!(
                    "currency mismatch: order {} / PSP {}",
                    o.total.currency(),
                    p.currency
                ));
            } else {
                self.problem(Problem::CurrencyMismatch);
            }
            return None;
        }
        if link && self.link_payment_failed(cfg, p) {
            return None;
        }
        let family = p.family();
        // A link payment moves money as in expert mode (captured per invoice).
        let mode = match (family, cfg.mode) {
            (MethodFamily::AuthorizeCapture, Mode::Standard) => Mode::Standard,
            _ => Mode::Expert,
        };
        Some(Facts {
            p,
            family,
            mode,
            cfg,
        })
    }
}

#[cfg(test)]
mod tests;
