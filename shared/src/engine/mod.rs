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

use crate::config::{MethodConfig, Mode};
use crate::ledger::{
    DocKind, ErpWrite, OpStatus, Operation, OrderKey, Plan, PspCall, Purpose, RefundReason,
};
use crate::model::{
    ErpOrder, MethodFamily, OrderStatus, PaymentState, Position, PspPayment, TxKind, TxStatus,
};
use crate::money::{Money, MoneyError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Comment prefix of a release with shipping lock; the reason follows.
const LOCKED: &str = "released WITH SHIPPING LOCK: ";

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Needs a human (dashboard error mark, e-mail).
    Error,
    /// Worth knowing, nothing to do yet.
    Hint,
}

/// A problem mark on an order. `code` is stable so repeats are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub severity: Severity,
    pub code: String,
    pub message: String,
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
    if let Err(e) = cx.run() {
        cx.problem(
            Severity::Error,
            "money",
            &format!("amounts inconsistent: {e}"),
        );
    }
    cx.failed_ops();
    cx.out
}

struct Cx<'i, 'a> {
    input: &'i Input<'a>,
    out: Decision,
}

/// Money still free to move, after subtracting every operation in progress.
struct Budget {
    /// Capturable or reversible: open authorization.
    open: Money,
    /// Refundable: captured − refunded.
    refundable: Money,
    /// Money operations planned or running but not yet visible at the PSP.
    in_progress: bool,
}

enum Check {
    Accept,
    Hold(String),
    Reject(String),
}

fn neg(m: Money) -> Result<Money, MoneyError> {
    Money::zero(m.currency()).checked_sub(m)
}

impl<'a> Cx<'_, 'a> {
    fn order(&self) -> &'a ErpOrder {
        self.input.order
    }

    /// The ledger's operation for (doc, purpose), if planned before.
    fn op(&self, kind: DocKind, doc_id: &str, purpose: Purpose) -> Option<&'a Operation> {
        let id = crate::ledger::op_id(self.input.key, kind, doc_id, purpose);
        self.input.ledger.iter().find(|o| o.id == id)
    }

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

    fn comment(&self, text: &str) -> ErpWrite {
        ErpWrite::Comment {
            text: format!(
                "paybridge {}: {text}",
                self.input.now.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }

    /// Records a flag; an error also gets one ERP comment (once per code).
    fn problem(&mut self, severity: Severity, code: &str, message: &str) {
        if self.out.flags.iter().any(|f| f.code == code) {
            return;
        }
        self.out.flags.push(Flag {
            severity,
            code: code.to_string(),
            message: message.to_string(),
        });
        if severity == Severity::Error {
            let order_id = self.order().order_id.clone();
            let c = self.comment(&format!("ERROR {message}"));
            self.plan(
                DocKind::Order,
                &format!("{order_id}:{code}"),
                Purpose::Problem,
                None,
                vec![c],
            );
        }
    }

    /// Every operation that needed a human stays an error until solved.
    fn failed_ops(&mut self) {
        if self.order().is_manual() || self.input.config.is_none() {
            return;
        }
        // A release with shipping lock stays an error until an operator marks it solved.
        if let Some(op) = self
            .input
            .ledger
            .iter()
            .find(|o| o.plan.purpose == Purpose::ReleaseLocked)
        {
            let reason = op
                .plan
                .erp
                .iter()
                .find_map(|w| match w {
                    ErpWrite::Comment { text } => {
                        text.split_once(LOCKED).map(|(_, r)| r.to_string())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "authorization check failed".into());
            self.problem(Severity::Error, "authorization_check", &reason);
        }
        for op in self
            .input
            .ledger
            .iter()
            .filter(|o| o.status == OpStatus::Failed)
        {
            let code = format!(
                "op_failed:{}",
                op.id.rsplit('/').take(2).collect::<Vec<_>>().join("@")
            );
            let msg = format!(
                "{:?} for {} failed: {}",
                op.plan.purpose,
                op.plan.doc_id,
                op.last_error.as_deref().unwrap_or("unknown")
            );
            self.problem(Severity::Error, &code, &msg);
        }
    }

    fn run(&mut self) -> Result<(), MoneyError> {
        let o = self.order();
        // §3.1.5: manual / exchange orders are not ours: no lock, no error.
        if o.is_manual() {
            return Ok(());
        }
        let Some(cfg) = self.input.config else {
            return Ok(());
        };
        let Some(pid) = o.psp_payment_id.as_deref().filter(|s| !s.is_empty()) else {
            if o.status == OrderStatus::Hold {
                self.release_locked("the order has no PSP payment id");
            }
            return Ok(());
        };
        let Some(p) = self.input.psp else {
            self.problem(
                Severity::Hint,
                "psp_unavailable",
                "the PSP payment could not be read yet",
            );
            return Ok(());
        };
        if p.payment_id != pid {
            self.problem(
                Severity::Error,
                "payment_mismatch",
                &format!(
                    "PSP payment {} does not belong to this order ({pid})",
                    p.payment_id
                ),
            );
            return Ok(());
        }
        if p.currency != o.total.currency() {
            if o.status == OrderStatus::Hold {
                self.release_locked(&format!(
                    "currency mismatch: order {} / PSP {}",
                    o.total.currency(),
                    p.currency
                ));
            } else {
                self.problem(
                    Severity::Error,
                    "currency_mismatch",
                    "order and PSP payment currencies differ",
                );
            }
            return Ok(());
        }
        let pos = p.position()?;
        if let Err(v) = crate::ledger::check_position(&pos, cfg.rounding_tolerance) {
            self.problem(Severity::Error, "invariant", &v.to_string());
            return Ok(());
        }
        let family = p.family();
        let mode = if family == MethodFamily::AuthorizeCapture {
            cfg.mode
        } else {
            Mode::Expert
        };

        if o.status == OrderStatus::Hold && !o.fully_cancelled() && !self.released() {
            return self.release(p, family, mode, &pos, cfg);
        }
        if family == MethodFamily::Prepayment {
            self.prepayment(p)?;
        }
        let mut budget = self.budget(&pos)?;
        self.invoices(p, family, mode, &pos, &mut budget, cfg)?;
        self.cancellations(p, family, mode, &mut budget)?;
        self.credit_notes(p, family, &mut budget, cfg)?;
        if matches!(p.state, PaymentState::Chargeback) {
            self.problem(
                Severity::Error,
                "chargeback",
                "the customer charged the payment back",
            );
        }
        Ok(())
    }

    fn released(&self) -> bool {
        let id = &self.order().order_id;
        [
            Purpose::Release,
            Purpose::ReleaseLocked,
            Purpose::ReleasePrepayment,
        ]
        .into_iter()
        .any(|p| self.has_op(DocKind::Order, id, p))
    }

    fn release_locked(&mut self, reason: &str) {
        let id = self.order().order_id.clone();
        let c = self.comment(&format!("{LOCKED}{reason}"));
        self.plan(
            DocKind::Order,
            &id,
            Purpose::ReleaseLocked,
            None,
            vec![ErpWrite::SetShippingLock, ErpWrite::Release, c],
        );
        self.problem(Severity::Error, "authorization_check", reason);
    }

    /// §3.1: is the payment accepted, and does it match the order?
    fn check(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        tolerance: u32,
    ) -> Result<Check, MoneyError> {
        let o = self.order();
        match p.state {
            PaymentState::Canceled => {
                return Ok(Check::Reject("the payment is cancelled at the PSP".into()));
            }
            PaymentState::PaymentReview => {
                return Ok(Check::Reject("the payment is in review at the PSP".into()));
            }
            PaymentState::Chargeback => {
                return Ok(Check::Reject("the payment was charged back".into()));
            }
            _ => {}
        }
        let Some(init) = p.initial() else {
            return Ok(Check::Reject("the PSP payment has no authorization".into()));
        };
        match init.status {
            TxStatus::Error => {
                return Ok(Check::Reject("the authorization failed at the PSP".into()));
            }
            TxStatus::Pending
                if !matches!(
                    family,
                    MethodFamily::Prepayment | MethodFamily::InvoiceLegacy
                ) =>
            {
                return Ok(Check::Hold(
                    "the payment is still pending at the PSP".into(),
                ));
            }
            _ => {}
        }
        if !init.amount.within(&o.total, tolerance)? {
            return Ok(Check::Reject(format!(
                "amount mismatch: order {} / PSP {}",
                o.total, init.amount
            )));
        }
        if init.amount != o.total {
            self.out.notes.push(format!(
                "rounding difference absorbed at release: order {} / PSP {}",
                o.total, init.amount
            ));
        }
        Ok(Check::Accept)
    }

    fn release(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        mode: Mode,
        pos: &Position,
        cfg: &MethodConfig,
    ) -> Result<(), MoneyError> {
        let id = self.order().order_id.clone();
        match self.check(p, family, cfg.rounding_tolerance)? {
            Check::Hold(why) => {
                self.problem(
                    Severity::Hint,
                    "pending",
                    &format!("{why}; the order stays on HOLD and is checked again"),
                );
            }
            Check::Reject(why) => self.release_locked(&why),
            Check::Accept if family == MethodFamily::Prepayment => {
                if p.received_in_full()? {
                    let c = self.comment("prepayment received, order released");
                    self.plan(
                        DocKind::Order,
                        &id,
                        Purpose::Release,
                        None,
                        vec![ErpWrite::Release, c],
                    );
                } else {
                    let mut w = Vec::new();
                    match &p.bank_details {
                        Some(d) => w.push(ErpWrite::TransferDetails { details: d.clone() }),
                        None => self.problem(
                            Severity::Hint,
                            "no_bank_details",
                            "the PSP gave no transfer details for the prepayment",
                        ),
                    }
                    w.push(ErpWrite::SetShippingLock);
                    w.push(ErpWrite::Release);
                    w.push(
                        self.comment(
                            "released with shipping lock until the prepayment is received",
                        ),
                    );
                    self.plan(DocKind::Order, &id, Purpose::ReleasePrepayment, None, w);
                }
            }
            Check::Accept if mode == Mode::Standard && pos.remaining()?.is_positive() => {
                // Standard mode: capture everything before the release.
                match self
                    .op(DocKind::Order, &id, Purpose::CaptureOrder)
                    .map(|o| o.status)
                {
                    None => {
                        // Budgeted like every money call: nothing in progress may overlap.
                        let budget = self.budget(pos)?;
                        if budget.in_progress || !budget.open.is_positive() {
                            return Ok(());
                        }
                        let amount = budget.open;
                        let c = self.comment(&format!("captured {amount} (standard mode)"));
                        self.plan(
                            DocKind::Order,
                            &id,
                            Purpose::CaptureOrder,
                            Some(PspCall::Capture { amount }),
                            vec![c],
                        );
                    }
                    Some(OpStatus::Failed) => {
                        self.release_locked("the capture before release failed")
                    }
                    Some(OpStatus::Done) => {
                        let c = self.comment("captured and released");
                        self.plan(
                            DocKind::Order,
                            &id,
                            Purpose::Release,
                            None,
                            vec![ErpWrite::Release, c],
                        );
                    }
                    Some(_) => {} // in progress; the release follows when it is done
                }
            }
            Check::Accept => {
                let c = self.comment("authorization checked, order released");
                self.plan(
                    DocKind::Order,
                    &id,
                    Purpose::Release,
                    None,
                    vec![ErpWrite::Release, c],
                );
            }
        }
        Ok(())
    }

    /// §3.2: clear our lock when the money arrived.
    fn prepayment(&mut self, p: &PspPayment) -> Result<(), MoneyError> {
        let id = self.order().order_id.clone();
        let locked_by_us = self.done(DocKind::Order, &id, Purpose::ReleasePrepayment);
        if p.received_in_full()? {
            if locked_by_us && !self.order().fully_cancelled() {
                let c = self.comment("prepayment received, shipping lock cleared");
                self.plan(
                    DocKind::Order,
                    &id,
                    Purpose::ClearLock,
                    None,
                    vec![ErpWrite::ClearShippingLock, c],
                );
            }
        } else if p.state == PaymentState::Partly {
            self.problem(
                Severity::Hint,
                "partly_paid",
                "the prepayment is only partly received",
            );
        }
        Ok(())
    }

    /// Free money after everything in progress (planned, running, retrying, or sent with an
    /// unknown outcome) is taken into account.
    fn budget(&self, pos: &Position) -> Result<Budget, MoneyError> {
        let mut b = Budget {
            open: pos.remaining()?,
            refundable: pos.refundable()?,
            in_progress: false,
        };
        for op in self.input.ledger {
            if op.psp_done || op.status == OpStatus::Failed {
                continue; // visible in the PSP position already, or never sent
            }
            match &op.plan.psp {
                Some(PspCall::Capture { amount }) | Some(PspCall::Reverse { amount }) => {
                    b.open = b.open.saturating_sub(*amount)?;
                    b.in_progress = true;
                }
                Some(PspCall::Refund { amount, .. }) => {
                    b.refundable = b.refundable.saturating_sub(*amount)?;
                    b.in_progress = true;
                }
                Some(PspCall::Shipment { .. }) | None => {}
            }
        }
        Ok(b)
    }

    /// An invoice handled by us: captured, booked, or reported.
    fn invoice_ours(&self, invoice_id: &str) -> bool {
        [Purpose::CaptureInvoice, Purpose::BookInvoice]
            .into_iter()
            .any(|p| self.has_op(DocKind::Invoice, invoice_id, p))
    }

    /// §3.3: capture / verify / book each invoice.
    fn invoices(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        mode: Mode,
        pos: &Position,
        budget: &mut Budget,
        cfg: &MethodConfig,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let cur = o.total.currency();
        let invoiced = Money::sum(cur, o.invoices.iter().map(|i| &i.amount))?;
        for inv in &o.invoices {
            if self.invoice_ours(&inv.invoice_id) || inv.captured {
                // captured by someone else before paybridge: left alone (a later return is refused)
                continue;
            }
            let mark = ErpWrite::MarkInvoiceCaptured {
                invoice_id: inv.invoice_id.clone(),
                event_code: cfg.invoice_event.clone(),
                amount: inv.amount,
            };
            let capture_per_invoice = matches!(
                family,
                MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit
            ) || (family == MethodFamily::AuthorizeCapture
                && mode == Mode::Expert);
            if capture_per_invoice {
                let mut amount = inv.amount;
                if amount.cmp_to(&budget.open)?.is_gt() {
                    if budget.in_progress {
                        continue; // wait for running operations to settle
                    }
                    if amount.le_with_tolerance(&budget.open, cfg.rounding_tolerance)?
                        && budget.open.is_positive()
                    {
                        self.out.notes.push(format!(
                            "invoice {}: rounding difference {} absorbed",
                            inv.invoice_id,
                            amount.checked_sub(budget.open)?
                        ));
                        amount = budget.open;
                    } else {
                        self.problem(
                            Severity::Error,
                            &format!("capture_exceeds:{}", inv.invoice_id),
                            &format!(
                                "invoice {} ({}) exceeds the open authorization ({})",
                                inv.invoice_id, inv.amount, budget.open
                            ),
                        );
                        continue;
                    }
                }
                budget.open = budget.open.checked_sub(amount)?;
                budget.in_progress = true;
                let c = self.comment(&format!("invoice {} captured: {amount}", inv.invoice_id));
                self.plan(
                    DocKind::Invoice,
                    &inv.invoice_id,
                    Purpose::CaptureInvoice,
                    Some(PspCall::Capture { amount }),
                    vec![mark, c],
                );
                continue;
            }
            match family {
                MethodFamily::AuthorizeCapture | MethodFamily::ChargedInShop => {
                    // Captured up front (standard mode or in the shop): verify, then book.
                    if !pos.charged.is_positive() {
                        continue; // the capture before release is not through yet
                    }
                    if !invoiced.le_with_tolerance(&o.total, cfg.rounding_tolerance)?
                        || !invoiced.le_with_tolerance(&pos.charged, cfg.rounding_tolerance)?
                    {
                        self.problem(Severity::Error, "invoices_exceed_order", &format!(
                            "the invoices ({invoiced}) exceed the order total ({}) or the captured amount ({})",
                            o.total, pos.charged
                        ));
                        continue;
                    }
                    let c = self.comment(&format!(
                        "invoice {} checked against the capture and booked",
                        inv.invoice_id
                    ));
                    self.plan(
                        DocKind::Invoice,
                        &inv.invoice_id,
                        Purpose::BookInvoice,
                        None,
                        vec![mark, c],
                    );
                }
                MethodFamily::Prepayment => {
                    // §3.2: shipped before receipt → no booking, ever: the operator was told to
                    // book it by hand (the problem's ERP comment in the ledger remembers it).
                    let code = format!("shipped_before_receipt:{}", inv.invoice_id);
                    let flagged = self.has_op(
                        DocKind::Order,
                        &format!("{}:{code}", o.order_id),
                        Purpose::Problem,
                    );
                    if flagged || !p.received_in_full()? {
                        self.problem(Severity::Error, &code, &format!(
                            "invoice {} was shipped before the prepayment was received: no booking, book it manually",
                            inv.invoice_id
                        ));
                    } else if o.status == OrderStatus::Closed {
                        // Book only what arrived: invoices above the money received (the PSP
                        // payment was for less than the order) are a human's decision.
                        if !invoiced.le_with_tolerance(&pos.charged, cfg.rounding_tolerance)? {
                            self.problem(Severity::Error, "invoices_exceed_received", &format!(
                                "the invoices ({invoiced}) exceed the prepayment received ({}): not booked, book by hand",
                                pos.charged
                            ));
                            continue;
                        }
                        let c = self
                            .comment(&format!("prepayment booked for invoice {}", inv.invoice_id));
                        self.plan(
                            DocKind::Invoice,
                            &inv.invoice_id,
                            Purpose::BookInvoice,
                            None,
                            vec![mark, c],
                        );
                    }
                }
                MethodFamily::InvoiceLegacy => {
                    if p.method.needs_shipment_call()
                        && !self.has_op(DocKind::Invoice, &inv.invoice_id, Purpose::Shipment)
                    {
                        let c = self
                            .comment(&format!("shipment of invoice {} reported", inv.invoice_id));
                        self.plan(
                            DocKind::Invoice,
                            &inv.invoice_id,
                            Purpose::Shipment,
                            Some(PspCall::Shipment {
                                invoice_id: inv.invoice_id.clone(),
                            }),
                            vec![c],
                        );
                    }
                    if o.status == OrderStatus::Closed {
                        let c = self.comment(&format!("invoice {} booked", inv.invoice_id));
                        self.plan(
                            DocKind::Invoice,
                            &inv.invoice_id,
                            Purpose::BookInvoice,
                            None,
                            vec![mark, c],
                        );
                    }
                }
                MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit => {
                    unreachable!("captured per invoice above")
                }
            }
        }
        // Expert mode: after the last delivery close the payment so the rest cannot be captured.
        if family == MethodFamily::AuthorizeCapture
            && mode == Mode::Expert
            && o.status == OrderStatus::Closed
            && !o.fully_cancelled()
            && !budget.in_progress
            && budget.open.is_positive()
            && o.invoices
                .iter()
                .all(|i| self.done(DocKind::Invoice, &i.invoice_id, Purpose::CaptureInvoice))
        {
            let amount = budget.open;
            budget.open = Money::zero(amount.currency());
            budget.in_progress = true;
            let c = self.comment(&format!(
                "payment closed after the last delivery: {amount} released"
            ));
            let id = o.order_id.clone();
            self.plan(
                DocKind::Order,
                &id,
                Purpose::ClosePayment,
                Some(PspCall::Reverse { amount }),
                vec![c],
            );
        }
        Ok(())
    }

    /// §3.4: whole-order and line cancellations.
    fn cancellations(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        mode: Mode,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let id = o.order_id.clone();
        let received = family == MethodFamily::Prepayment && p.received_in_full()?;
        let charged_any = p
            .transactions
            .iter()
            .any(|t| t.kind == TxKind::Charge && t.status == TxStatus::Success);
        if o.fully_cancelled() {
            // Prepayment: reverse what is still due, refund whatever was received.
            let reverse = match family {
                MethodFamily::AuthorizeCapture
                | MethodFamily::InvoiceLegacy
                | MethodFamily::Prepayment => true,
                MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit => !charged_any,
                MethodFamily::ChargedInShop => false,
            };
            let refund = match family {
                MethodFamily::AuthorizeCapture => mode == Mode::Standard,
                MethodFamily::ChargedInShop => true,
                MethodFamily::Prepayment => true,
                _ => false,
            };
            if reverse
                && budget.open.is_positive()
                && !self.has_op(DocKind::Order, &id, Purpose::CancelOrder)
            {
                let amount = budget.open;
                budget.open = Money::zero(amount.currency());
                budget.in_progress = true;
                let c = self.comment(&format!(
                    "order cancelled: authorization of {amount} reversed"
                ));
                self.plan(
                    DocKind::Order,
                    &id,
                    Purpose::CancelOrder,
                    Some(PspCall::Reverse { amount }),
                    vec![c],
                );
            }
            if refund
                && budget.refundable.is_positive()
                && !self.has_op(DocKind::Order, &id, Purpose::RefundOrder)
            {
                if budget.in_progress {
                    return Ok(()); // let running captures/refunds settle first
                }
                // Credit notes of this order are refunded on their own; keep their share.
                let amount = budget.refundable;
                budget.refundable = Money::zero(amount.currency());
                budget.in_progress = true;
                let c = self.comment(&format!("order cancelled: {amount} refunded"));
                self.plan(
                    DocKind::Order,
                    &id,
                    Purpose::RefundOrder,
                    Some(PspCall::Refund {
                        amount,
                        reason: RefundReason::Cancel,
                    }),
                    vec![c],
                );
            }
            return Ok(());
        }

        let cancelled: Vec<_> = o.cancelled_lines().collect();
        if cancelled.is_empty() {
            return Ok(());
        }
        match family {
            MethodFamily::AuthorizeCapture if mode == Mode::Expert => {} // closed after the last delivery
            MethodFamily::AuthorizeCapture | MethodFamily::ChargedInShop => {
                if o.status != OrderStatus::Closed {
                    return Ok(()); // sent once the order is CLOSED
                }
                for line in cancelled {
                    if self.has_op(DocKind::Line, &line.line_id, Purpose::RefundLine) {
                        continue;
                    }
                    if line.amount.cmp_to(&budget.refundable)?.is_gt() {
                        if !budget.in_progress {
                            self.problem(
                                Severity::Error,
                                &format!("refund_exceeds:{}", line.line_id),
                                &format!(
                                    "cancelled line {} ({}) exceeds the refundable amount ({})",
                                    line.line_id, line.amount, budget.refundable
                                ),
                            );
                        }
                        continue;
                    }
                    budget.refundable = budget.refundable.checked_sub(line.amount)?;
                    budget.in_progress = true;
                    let c = self.comment(&format!(
                        "cancelled line {} refunded: {}",
                        line.line_id, line.amount
                    ));
                    self.plan(
                        DocKind::Line,
                        &line.line_id,
                        Purpose::RefundLine,
                        Some(PspCall::Refund {
                            amount: line.amount,
                            reason: RefundReason::Cancel,
                        }),
                        vec![c],
                    );
                }
            }
            MethodFamily::Prepayment
            | MethodFamily::InvoiceLegacy
            | MethodFamily::PaylaterInvoice => {
                let due = match family {
                    MethodFamily::Prepayment => o.status == OrderStatus::Closed || received,
                    MethodFamily::InvoiceLegacy => o.status == OrderStatus::Closed,
                    _ => charged_any || o.status == OrderStatus::Closed,
                };
                if !due {
                    return Ok(());
                }
                // Lines already covered by an earlier aggregate are not sent again.
                let covered: Vec<String> = self
                    .input
                    .ledger
                    .iter()
                    .filter(|op| op.plan.purpose == Purpose::CancelLines)
                    .flat_map(|op| {
                        op.plan
                            .doc_id
                            .split('+')
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let new: Vec<_> = cancelled
                    .into_iter()
                    .filter(|l| !covered.contains(&l.line_id))
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                let amount = Money::sum(o.total.currency(), new.iter().map(|l| &l.amount))?;
                let doc = new
                    .iter()
                    .map(|l| l.line_id.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                let call = if received {
                    if amount.cmp_to(&budget.refundable)?.is_gt() {
                        let msg = format!(
                            "cancelled lines ({amount}) exceed the refundable amount ({})",
                            budget.refundable
                        );
                        self.problem(Severity::Error, "cancel_lines_exceed", &msg);
                        return Ok(());
                    }
                    budget.refundable = budget.refundable.checked_sub(amount)?;
                    budget.in_progress = true;
                    PspCall::Refund {
                        amount,
                        reason: RefundReason::Cancel,
                    }
                } else {
                    if amount.cmp_to(&budget.open)?.is_gt() {
                        let msg = format!(
                            "cancelled lines ({amount}) exceed the open amount ({})",
                            budget.open
                        );
                        self.problem(Severity::Error, "cancel_lines_exceed", &msg);
                        return Ok(());
                    }
                    budget.open = budget.open.checked_sub(amount)?;
                    budget.in_progress = true;
                    PspCall::Reverse { amount }
                };
                let c = self.comment(&format!("cancelled lines {doc} sent together: {amount}"));
                self.plan(
                    DocKind::Line,
                    &doc,
                    Purpose::CancelLines,
                    Some(call),
                    vec![c],
                );
            }
            // The remainder expires with the authorization: nothing is sent.
            MethodFamily::PaylaterDebit => {}
        }
        Ok(())
    }

    /// §3.5: refund credit notes, book them; refuse returns on invoices captured outside paybridge.
    fn credit_notes(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        budget: &mut Budget,
        cfg: &MethodConfig,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        for cn in &o.credit_notes {
            if self.has_op(DocKind::CreditNote, &cn.credit_id, Purpose::RefundCredit) {
                continue;
            }
            if cn.settled {
                self.problem(Severity::Error, &format!("credit_settled:{}", cn.credit_id), &format!(
                    "credit note {} is already settled in the ERP (set \"no DTAUS\"); nothing was refunded",
                    cn.credit_id
                ));
                continue;
            }
            if let Some(inv_id) = &cn.invoice_id
                && o.invoices
                    .iter()
                    .any(|i| &i.invoice_id == inv_id && i.captured)
                && !self.invoice_ours(inv_id)
            {
                self.problem(Severity::Error, &format!("foreign_capture:{}", cn.credit_id), &format!(
                    "credit note {} returns invoice {inv_id}, which was captured before paybridge handled this order: refund it by hand",
                    cn.credit_id
                ));
                continue;
            }
            if cn.amount.cmp_to(&budget.refundable)?.is_gt() {
                let money_may_come = budget.in_progress
                    || (matches!(
                        family,
                        MethodFamily::Prepayment | MethodFamily::InvoiceLegacy
                    ) && !p.received_in_full()?);
                if money_may_come {
                    self.problem(
                        Severity::Hint,
                        &format!("refund_waits:{}", cn.credit_id),
                        &format!(
                            "credit note {} waits until the money it returns has arrived",
                            cn.credit_id
                        ),
                    );
                } else {
                    self.problem(
                        Severity::Error,
                        &format!("refund_exceeds:{}", cn.credit_id),
                        &format!(
                            "credit note {} ({}) exceeds the refundable amount ({})",
                            cn.credit_id, cn.amount, budget.refundable
                        ),
                    );
                }
                continue;
            }
            budget.refundable = budget.refundable.checked_sub(cn.amount)?;
            budget.in_progress = true;
            let booking = ErpWrite::ManualBooking {
                amount: neg(cn.amount)?,
                event_code: cfg.return_event.clone(),
                document: cn.credit_id.clone(),
            };
            let c = self.comment(&format!(
                "credit note {} refunded: {}",
                cn.credit_id, cn.amount
            ));
            self.plan(
                DocKind::CreditNote,
                &cn.credit_id,
                Purpose::RefundCredit,
                Some(PspCall::Refund {
                    amount: cn.amount,
                    reason: RefundReason::Return,
                }),
                vec![booking, c],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
