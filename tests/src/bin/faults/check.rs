//! What must hold after a lifecycle has run to quiescence, checked against the test doubles' own
//! records (the PSP's transactions, the ERP's applied writes) and the ledger. Five kinds of
//! violation, defined precisely in `docs/reliability.md`:
//!
//! - **double**: money moved or booked twice — a PSP reference with more than one transaction,
//!   an ERP document with more than one money movement (per direction for the order itself), an
//!   invoice marked captured or a document booked more than once, or a PSP position breaking
//!   captured ≤ authorized − reversed (+ tolerance) / refunded ≤ captured;
//! - **lost**: work silently left undone — the run did not quiesce, an operation neither Done
//!   nor Failed, a Failed operation without an open error on the order, an operation the engine
//!   would still plan, a shipping lock wrongly left set or missing, a stored PSP event never
//!   applied;
//! - **unreconciled**: the ledger, the ERP's bookings and the PSP's movements disagree — a PSP
//!   transaction without a ledger operation or not recorded on it, a ledger operation claiming a
//!   movement the PSP does not have, a Done operation whose booking is missing, a booking without
//!   an operation, a document booked for another amount than moved (to the cent; a rounding
//!   difference the engine absorbed within the tolerance excepted), more booked than captured or
//!   refunded in total;
//! - **expiry** (issue 12): a capture first sent to the PSP at or after the authorization's
//!   expiry (a capture whose reference was sent before the expiry is in flight and may be
//!   repeated or reconciled after it), or an order (released, in automation) whose
//!   authorization expired with money left to capture that does not end with the
//!   `authorization_expired` error;
//! - **hands_off** (issue 12): a PSP `execute` or ERP `apply` started while the order is out
//!   of automation (from the commit of the operator's switch to the commit of the one that puts
//!   it back) that is not a switch comment, not an operation started or claimed in the store at
//!   the commit, and not made by a job begun before the commit (it may have read the order
//!   before; whoever resumes such an operation may finish it) — see `sim::Sim::outbound`; or an
//!   operation cancelled though the order never was out of automation.
//!
//! The final engine check uses the record's real `first_seen_at` and `hands_off_since`.

use crate::scenario::Family;
use crate::sim::{CaptureSend, short_op};
use chrono::{DateTime, Duration, Utc};
use paybridge_core::config::MethodConfig;
use paybridge_core::engine::{self, Input};
use paybridge_core::ledger::{
    self, DocKind, ErpWrite, OpStatus, Operation, OrderKey, PspCall, Purpose,
};
use paybridge_core::model::{ErpOrder, OrderStatus, PspPayment, TxKind};
use paybridge_core::money::Money;
use paybridge_core::notify::Problem;
use paybridge_core::store::repo::{EventRecord, OrderRecord};
use std::collections::BTreeMap;

/// The final state of one lifecycle.
pub struct Final {
    pub key: OrderKey,
    pub now: DateTime<Utc>,
    pub family: Family,
    pub cfg: MethodConfig,
    pub erp_order: Option<ErpOrder>,
    pub payment: PspPayment,
    pub ops: Vec<Operation>,
    pub record: Option<OrderRecord>,
    /// The ERP's applied writes: (order, op reference, write).
    pub writes: Vec<(String, String, ErpWrite)>,
    pub sent: Vec<Problem>,
    pub unapplied: Vec<EventRecord>,
    /// The payment is linked to an order in the store.
    pub linked: bool,
    pub quiesced: bool,
    pub dead_letters: usize,
    /// The lifecycle's start (trace times are relative to it).
    pub start: DateTime<Utc>,
    /// The validity in force for the order's authorization (days), if it holds one.
    pub auth_days: Option<u32>,
    /// The PSP's authorize transaction time as drawn (`None`: the PSP gives none).
    pub auth_at: Option<DateTime<Utc>>,
    /// Every capture the product sent to the PSP.
    pub captures: Vec<CaptureSend>,
    /// PSP / ERP calls that started while the order was out of automation (see `sim`).
    pub hands_off_violations: Vec<String>,
    /// Hands-off windows (since, until).
    pub windows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// Violations found, by kind, one line each; `info` lines are worth knowing but not counted.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub double: Vec<String>,
    pub lost: Vec<String>,
    pub unreconciled: Vec<String>,
    /// A capture sent after the authorization expired, or an expired authorization with money
    /// left to capture and no `authorization_expired` error.
    pub expiry: Vec<String>,
    /// A PSP or ERP call started while the order was out of automation, or an operation
    /// cancelled with no switch to explain it.
    pub hands_off: Vec<String>,
    pub info: Vec<String>,
}

impl Findings {
    pub fn clean(&self) -> bool {
        self.double.is_empty()
            && self.lost.is_empty()
            && self.unreconciled.is_empty()
            && self.expiry.is_empty()
            && self.hands_off.is_empty()
    }
}

fn is_money(kind: TxKind) -> bool {
    matches!(
        kind,
        TxKind::Charge | TxKind::CancelAuthorize | TxKind::CancelCharge
    )
}

fn direction(kind: TxKind) -> &'static str {
    match kind {
        TxKind::Charge => "capture",
        TxKind::CancelAuthorize => "reversal",
        TxKind::CancelCharge => "refund",
        _ => "other",
    }
}

fn booking(w: &ErpWrite) -> bool {
    matches!(
        w,
        ErpWrite::MarkInvoiceCaptured { .. } | ErpWrite::ManualBooking { .. }
    )
}

/// The error code the engine gives a failed operation (engine `failed_ops`).
fn failed_code(op: &Operation) -> String {
    format!(
        "op_failed:{}",
        op.id.rsplit('/').take(2).collect::<Vec<_>>().join("@")
    )
}

fn sum(cur: paybridge_core::money::Currency, it: impl Iterator<Item = Money>) -> Money {
    it.fold(Money::zero(cur), |a, m| a.checked_add(m).unwrap_or(a))
}

pub fn check(f: &Final) -> Findings {
    let mut out = Findings::default();
    let cur = f.payment.currency;
    let tol = f.cfg.rounding_tolerance;
    let by_ref: BTreeMap<String, &Operation> = f
        .ops
        .iter()
        .map(|o| (ledger::psp_reference(&o.id), o))
        .collect();

    // ---------------------------------------------------------------- double
    let mut per_ref: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_doc: BTreeMap<String, usize> = BTreeMap::new();
    for t in &f.payment.transactions {
        let Some(r) = t.reference.as_deref() else {
            continue;
        };
        *per_ref.entry(r).or_default() += 1;
        let Some(op) = by_ref.get(r) else {
            continue;
        };
        if !is_money(t.kind) {
            continue;
        }
        let docs: Vec<String> = match op.plan.doc_kind {
            DocKind::Line => op
                .plan
                .doc_id
                .split('+')
                .map(|l| format!("line {l}"))
                .collect(),
            DocKind::Invoice => vec![format!("invoice {}", op.plan.doc_id)],
            DocKind::CreditNote => vec![format!("credit note {}", op.plan.doc_id)],
            DocKind::Order => vec![format!("order {} ({})", op.plan.doc_id, direction(t.kind))],
        };
        for d in docs {
            *per_doc.entry(d).or_default() += 1;
        }
    }
    for (r, n) in &per_ref {
        if *n > 1 {
            let op = by_ref
                .get(*r)
                .map_or("no op".to_string(), |o| short_op(&o.id));
            out.double
                .push(format!("PSP reference {r} ({op}) carries {n} transactions"));
        }
    }
    for (d, n) in &per_doc {
        if *n > 1 {
            out.double
                .push(format!("{d} moved money {n} times at the PSP"));
        }
    }
    let mut marks: BTreeMap<&str, usize> = BTreeMap::new();
    let mut manual: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, w) in &f.writes {
        match w {
            ErpWrite::MarkInvoiceCaptured { invoice_id, .. } => {
                *marks.entry(invoice_id).or_default() += 1
            }
            ErpWrite::ManualBooking { document, .. } => *manual.entry(document).or_default() += 1,
            _ => {}
        }
    }
    for (d, n) in &marks {
        if *n > 1 {
            out.double.push(format!(
                "invoice {d} marked captured (booked) {n} times in the ERP"
            ));
        }
    }
    for (d, n) in &manual {
        if *n > 1 {
            out.double
                .push(format!("document {d} booked manually {n} times in the ERP"));
        }
    }
    match f.payment.position() {
        Err(e) => out.double.push(format!("PSP position broken: {e}")),
        Ok(pos) => {
            if let Err(v) = ledger::check_position(&pos, tol) {
                out.double.push(format!("PSP position: {v}"));
            }
        }
    }

    // ---------------------------------------------------------------- lost
    if !f.quiesced {
        out.lost
            .push("the system did not quiesce without faults".to_string());
    }
    let open_errors: Vec<String> = f
        .record
        .as_ref()
        .map(|r| r.open_errors().map(|e| e.code.clone()).collect())
        .unwrap_or_default();
    for op in &f.ops {
        match op.status {
            OpStatus::Done => {}
            // Never started: the order was taken out of automation (checked below).
            OpStatus::Cancelled => {}
            OpStatus::Failed => {
                let code = failed_code(op);
                if !open_errors.contains(&code) {
                    out.lost.push(format!(
                        "{} failed without an open error on the order: {}",
                        short_op(&op.id),
                        op.last_error.as_deref().unwrap_or("?")
                    ));
                }
            }
            s => out.lost.push(format!(
                "{} left {s:?} (attempts {}, psp_done {}, erp_done {}/{}, inflight {:?}, last error {:?})",
                short_op(&op.id),
                op.attempts,
                op.psp_done,
                op.erp_done,
                op.plan.erp.len(),
                op.inflight,
                op.last_error
            )),
        }
    }
    for code in &open_errors {
        if !f.sent.iter().any(|p| &p.code == code) {
            out.info
                .push(format!("open error {code} was never e-mailed"));
        }
    }
    let hands_off = f.record.as_ref().and_then(|r| r.hands_off_since);
    if let Some(order) = &f.erp_order {
        // The engine on the final state as the product sees it: the record's first sight and
        // hands-off switch.
        let d = engine::decide(&Input {
            key: &f.key,
            order,
            psp: Some(&f.payment),
            ledger: &f.ops,
            config: Some(&f.cfg),
            now: f.now,
            first_seen: f
                .record
                .as_ref()
                .and_then(|r| r.first_seen_at)
                .unwrap_or(f.now),
            hands_off,
        });
        for p in &d.plans {
            out.lost.push(format!(
                "the engine still plans {:?} for {:?} {} on the final state",
                p.purpose, p.doc_kind, p.doc_id
            ));
        }
        let received = f.payment.received_in_full().unwrap_or(false);
        let waits_for_money = f.family == Family::Prepayment && !received;
        // An order left out of automation is the operator's to finish.
        if hands_off.is_none()
            && order.shipping_lock
            && !order.fully_cancelled()
            && open_errors.is_empty()
            && !waits_for_money
        {
            out.lost.push(
                "the shipping lock is still set, with no open error and no money outstanding"
                    .to_string(),
            );
        }
        let released = f
            .ops
            .iter()
            .any(|o| o.plan.purpose == Purpose::ReleasePrepayment && o.status == OpStatus::Done);
        if hands_off.is_none()
            && waits_for_money
            && released
            && !order.shipping_lock
            && !order.fully_cancelled()
            && open_errors.is_empty()
        {
            out.lost
                .push("prepayment not received but the shipping lock is gone".to_string());
        }
    }
    if f.linked {
        for ev in &f.unapplied {
            out.lost.push(format!(
                "PSP event {} for {} stored but never applied",
                ev.event, ev.payment_id
            ));
        }
    }

    // ---------------------------------------------------------------- unreconciled
    for t in &f.payment.transactions {
        let Some(r) = t.reference.as_deref() else {
            continue;
        };
        let Some(op) = by_ref.get(r) else {
            out.unreconciled.push(format!(
                "PSP transaction {} ({:?} {}) carries reference {r} of no ledger operation",
                t.id, t.kind, t.amount
            ));
            continue;
        };
        if !op.psp_done || op.psp_tx.as_deref() != Some(t.id.as_str()) {
            out.unreconciled.push(format!(
                "PSP transaction {} ({:?} {}) of {} is not recorded on it (status {:?}, psp_done {}, psp_tx {:?})",
                t.id,
                t.kind,
                t.amount,
                short_op(&op.id),
                op.status,
                op.psp_done,
                op.psp_tx
            ));
        }
        let expected = op
            .plan
            .psp
            .as_ref()
            .and_then(PspCall::amount)
            .unwrap_or(Money::zero(cur));
        if t.amount != expected {
            out.unreconciled.push(format!(
                "PSP transaction {} moved {} but {} planned {}",
                t.id,
                t.amount,
                short_op(&op.id),
                expected
            ));
        }
    }
    for op in f.ops.iter().filter(|o| o.psp_done) {
        let r = ledger::psp_reference(&op.id);
        let found = f.payment.transactions.iter().any(|t| {
            Some(t.id.as_str()) == op.psp_tx.as_deref()
                && t.reference.as_deref() == Some(r.as_str())
        });
        if !found {
            out.unreconciled.push(format!(
                "{} says the PSP did {:?} as {:?}, the PSP has no such transaction",
                short_op(&op.id),
                op.plan.psp,
                op.psp_tx
            ));
        }
    }
    for op in f.ops.iter().filter(|o| o.status == OpStatus::Done) {
        for w in op.plan.erp.iter().filter(|w| booking(w)) {
            if !f.writes.iter().any(|(_, r, x)| r == &op.id && x == w) {
                out.unreconciled.push(format!(
                    "{} is Done but its booking {} is not in the ERP",
                    short_op(&op.id),
                    crate::sim::write_label(w)
                ));
            }
        }
    }
    for (_, r, w) in f.writes.iter().filter(|(_, _, w)| booking(w)) {
        let owned = f.ops.iter().any(|o| &o.id == r && o.plan.erp.contains(w));
        if !owned {
            out.unreconciled.push(format!(
                "ERP booking {} by {r} belongs to no ledger operation",
                crate::sim::write_label(w)
            ));
        }
    }
    // Per document with its own money movement: booked = moved, to the cent.
    for op in f.ops.iter().filter(|o| o.status == OpStatus::Done) {
        let Some(tx) = op
            .psp_tx
            .as_deref()
            .and_then(|id| f.payment.transactions.iter().find(|t| t.id == id))
        else {
            continue;
        };
        match op.plan.purpose {
            Purpose::CaptureInvoice => {
                let booked: Vec<Money> = f
                    .writes
                    .iter()
                    .filter_map(|(_, _, w)| match w {
                        ErpWrite::MarkInvoiceCaptured {
                            invoice_id, amount, ..
                        } if invoice_id == &op.plan.doc_id => Some(*amount),
                        _ => None,
                    })
                    .collect();
                let booked = sum(cur, booked.into_iter());
                if booked != tx.amount {
                    let absorbed = booked.cmp_to(&tx.amount).is_ok_and(|o| o.is_gt())
                        && booked.within(&tx.amount, tol).unwrap_or(false);
                    if !absorbed {
                        out.unreconciled.push(format!(
                            "invoice {} booked {booked} but {} captured at the PSP",
                            op.plan.doc_id, tx.amount
                        ));
                    }
                }
            }
            Purpose::RefundCredit => {
                let booked = sum(
                    cur,
                    f.writes.iter().filter_map(|(_, _, w)| match w {
                        ErpWrite::ManualBooking {
                            document, amount, ..
                        } if document == &op.plan.doc_id => Some(*amount),
                        _ => None,
                    }),
                );
                let moved = Money::zero(cur).checked_sub(tx.amount).ok();
                if Some(booked) != moved {
                    out.unreconciled.push(format!(
                        "credit note {} booked {booked} but {} refunded at the PSP",
                        op.plan.doc_id, tx.amount
                    ));
                }
            }
            _ => {}
        }
    }
    // Order level: never more booked than the PSP moved.
    if let Ok(pos) = f.payment.position() {
        let marked: Vec<Money> = f
            .writes
            .iter()
            .filter_map(|(_, _, w)| match w {
                ErpWrite::MarkInvoiceCaptured { amount, .. } => Some(*amount),
                _ => None,
            })
            .collect();
        let n = marked.len() as i64;
        let booked = sum(cur, marked.into_iter());
        let slack = Money::from_minor(n * i64::from(tol), cur);
        let limit = pos.charged.checked_add(slack).unwrap_or(pos.charged);
        // Invoice secured is booked when CLOSED on the PSP's guarantee, not on a movement.
        if f.family != Family::InvoiceSecured && booked.cmp_to(&limit).is_ok_and(|o| o.is_gt()) {
            out.unreconciled.push(format!(
                "invoices booked {booked} exceed what the PSP captured {}",
                pos.charged
            ));
        }
        let refunds = sum(
            cur,
            f.writes.iter().filter_map(|(_, _, w)| match w {
                ErpWrite::ManualBooking { amount, .. } => {
                    Money::zero(cur).checked_sub(*amount).ok()
                }
                _ => None,
            }),
        );
        if refunds.cmp_to(&pos.refunded).is_ok_and(|o| o.is_gt()) {
            out.unreconciled.push(format!(
                "refunds booked {refunds} exceed what the PSP refunded {}",
                pos.refunded
            ));
        }
    }

    expiry(f, &mut out);
    hands_off_checks(f, &mut out);

    if f.dead_letters > 0 {
        out.info.push(format!(
            "{} message(s) dead-lettered (work recovered by the sweep)",
            f.dead_letters
        ));
    }
    out
}

/// FNV-1a over a canonical rendering of the final state: equal digests for equal runs.
pub fn digest(f: &Final) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&format!("{:?}", f.payment.transactions));
    eat(&format!("{:?}", f.writes));
    for o in &f.ops {
        eat(&format!(
            "{} {:?} {:?} {} {}",
            o.id, o.status, o.psp_tx, o.erp_done, o.attempts
        ));
    }
    eat(&format!("{:?}", f.erp_order));
    eat(&f.now.to_rfc3339());
    h
}

/// Seconds since the lifecycle start, for messages.
fn rel(f: &Final, t: DateTime<Utc>) -> String {
    format!("t+{}s", (t - f.start).num_seconds())
}

/// When the order's authorization expires as the engine counts it: from the PSP's authorize
/// transaction, else from the record's first sight of the order.
fn expires_at(f: &Final) -> Option<DateTime<Utc>> {
    let days = f.auth_days?;
    let from = match f.auth_at {
        Some(at) => at,
        None => f.record.as_ref()?.first_seen_at?,
    };
    Some(from + Duration::days(i64::from(days)))
}

/// (a) No capture *sent* at or after the expiry unless the same capture (its PSP reference)
/// was sent before the expiry already (in flight: its outcome being reconciled or its sending
/// repeated); and an expired authorization with money left to capture ends with the
/// `authorization_expired` error (unless the order is out of automation or still on HOLD).
fn expiry(f: &Final, out: &mut Findings) {
    let Some(expires) = expires_at(f) else {
        return;
    };
    for c in f.captures.iter().filter(|c| c.at >= expires) {
        let earlier = f
            .captures
            .iter()
            .any(|d| d.reference == c.reference && d.at < expires);
        if earlier {
            out.info.push(format!(
                "capture {} sent again after the expiry (first sent before it)",
                c.reference
            ));
        } else {
            let op = f
                .ops
                .iter()
                .find(|o| ledger::psp_reference(&o.id) == c.reference)
                .map_or("no op".to_string(), |o| short_op(&o.id));
            out.expiry.push(format!(
                "capture {} ({op}) first sent at {} [{}], after the authorization expired at {}",
                c.reference,
                rel(f, c.at),
                c.proc,
                rel(f, expires)
            ));
        }
    }
    let Some(order) = &f.erp_order else {
        return;
    };
    let out_of_automation = f
        .record
        .as_ref()
        .is_some_and(|r| r.hands_off_since.is_some());
    if f.now < expires || out_of_automation || order.status == OrderStatus::Hold {
        return;
    }
    let Ok(open) = f.payment.position().and_then(|p| p.remaining()) else {
        return;
    };
    let ours = |inv: &str| {
        f.ops.iter().any(|o| {
            o.status != OpStatus::Cancelled
                && o.plan.doc_kind == DocKind::Invoice
                && o.plan.doc_id == inv
                && matches!(
                    o.plan.purpose,
                    Purpose::CaptureInvoice | Purpose::BookInvoice
                )
        })
    };
    let to_ship = order.status != OrderStatus::Closed && !order.nothing_left_to_ship();
    let uncaptured = order
        .invoices
        .iter()
        .any(|i| !i.captured && !ours(&i.invoice_id));
    if !(open.is_positive() && (to_ship || uncaptured)) {
        return;
    }
    let flagged = f
        .record
        .as_ref()
        .is_some_and(|r| r.open_errors().any(|e| e.code == "authorization_expired"));
    if flagged {
        out.info.push(
            "authorization expired with money left to capture: authorization_expired error present"
                .to_string(),
        );
    } else {
        out.expiry.push(format!(
            "the authorization expired at {} with {open} left to capture ({}), but the order has no authorization_expired error",
            rel(f, expires),
            if uncaptured {
                "uncaptured invoices"
            } else {
                "lines to ship"
            }
        ));
    }
}

/// (b) Nothing started while the order was out of automation (the calls `sim` caught), and an
/// operation cancelled only if the order was out of automation at some point.
fn hands_off_checks(f: &Final, out: &mut Findings) {
    out.hands_off.extend(f.hands_off_violations.iter().cloned());
    if f.windows.is_empty() {
        for op in f.ops.iter().filter(|o| o.status == OpStatus::Cancelled) {
            out.hands_off.push(format!(
                "{} cancelled though the order was never out of automation: {:?}",
                short_op(&op.id),
                op.last_error
            ));
        }
    }
}
