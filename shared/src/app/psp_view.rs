//! Which PSP view a decision or a money call is made on: the view stored at the last fresh
//! read, brought up to date with paybridge's own calls finished since, as long as nothing
//! else can have moved the payment; otherwise a fresh read.
//!
//! The PSP reports the changes paybridge does not make (a transfer received, a chargeback, a
//! cancellation in its portal) by webhook, and every stored event not yet applied makes the
//! next evaluation read again. A call of ours with an unknown outcome (in flight) does too.
//! A call of ours that finished is added to the stored view as the transaction it made, for
//! the kinds whose transaction is certain (a capture is a charge, a refund a charge cancel);
//! any other finished call makes the next evaluation read again. So a money call is decided
//! and sent on the view that decided it, and the PSP itself still refuses a capture above the
//! open authorization or a refund above the charged rest.

use super::{App, AppError};
use crate::ledger::{self, Operation, OrderKey, PspCall, Step};
use crate::model::{PaymentState, PspPayment, PspTransaction, TxKind, TxStatus};
use crate::store::repo::EventRecord;
use chrono::{DateTime, Utc};

/// What the stored view is checked against: the payment's pending PSP events, the order's
/// ledger, and the view itself when it can be trusted.
pub(super) struct Known {
    pub view: Option<PspPayment>,
    pub ops: Vec<Operation>,
    pub events: Vec<EventRecord>,
}

impl App {
    /// The order's operations as stored, with `rider` (an operation of this process not
    /// saved yet) in place of its stored state.
    pub(super) async fn ledger(
        &self,
        key: &OrderKey,
        rider: Option<&Operation>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, AppError> {
        let mut ops = self.repo().ops(key, now).await?;
        if let Some(r) = rider {
            match ops.iter_mut().find(|o| o.id == r.id) {
                Some(o) => *o = r.clone(),
                None => ops.push(r.clone()),
            }
        }
        Ok(ops)
    }

    /// Reads the payment's pending events (before any PSP read: a fresh view reflects them)
    /// and the order's ledger, and decides with [`known_view`] whether `stored` can be used.
    pub(super) async fn known(
        &self,
        key: &OrderKey,
        pid: &str,
        stored: Option<&PspPayment>,
        rider: Option<&Operation>,
        now: DateTime<Utc>,
    ) -> Result<Known, AppError> {
        let events = self.repo().payment_events(&key.tenant, pid, now).await?;
        let ops = self.ledger(key, rider, now).await?;
        let view = known_view(stored, pid, &ops, !events.is_empty());
        Ok(Known { view, ops, events })
    }
}

/// The stored view with our finished calls applied, or `None` when a fresh read is needed:
/// no stored view of this payment, PSP events pending, a view still waiting for the PSP (a
/// pending transaction, a payment in review), or one of our calls in an unknown state.
pub(super) fn known_view(
    stored: Option<&PspPayment>,
    payment_id: &str,
    ops: &[Operation],
    events_pending: bool,
) -> Option<PspPayment> {
    let stored = stored.filter(|v| v.payment_id == payment_id && !v.totals_only)?;
    let waiting = stored.state == PaymentState::PaymentReview
        || stored
            .transactions
            .iter()
            .any(|t| t.status == TxStatus::Pending);
    if events_pending || waiting {
        return None;
    }
    let mut view = stored.clone();
    for op in ops {
        let Some(call) = &op.plan.psp else { continue };
        if op.inflight == Some(Step::Psp) {
            return None; // sent, outcome unknown
        }
        let Some(tx_id) = &op.psp_tx else { continue }; // not sent, or known not sent
        let reference = ledger::psp_reference(&op.id);
        if view
            .transactions
            .iter()
            .any(|t| &t.id == tx_id || t.reference.as_deref() == Some(reference.as_str()))
        {
            continue; // the stored view has it already
        }
        let (kind, amount) = match call {
            PspCall::Capture { amount } => (TxKind::Charge, *amount),
            PspCall::Refund { amount, .. } => (TxKind::CancelCharge, *amount),
            PspCall::Reverse { .. } | PspCall::Shipment { .. } | PspCall::RequestPayment { .. } => {
                return None;
            }
        };
        view.transactions.push(PspTransaction {
            at: None,
            id: tx_id.clone(),
            kind,
            status: TxStatus::Success,
            amount,
            reference: Some(reference),
        });
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{DocKind, OrderKey, Plan, Purpose, RefundReason};
    use crate::model::PaymentMethod;
    use crate::money::{Currency, Money};
    use chrono::{TimeZone, Utc};

    fn eur(s: &str) -> Money {
        Money::parse(s, Currency::EUR).unwrap()
    }

    fn stored() -> PspPayment {
        PspPayment {
            payment_id: "p-1".into(),
            state: PaymentState::Pending,
            method: PaymentMethod::Card,
            currency: Currency::EUR,
            transactions: vec![PspTransaction {
                at: None,
                id: "aut-1".into(),
                kind: TxKind::Authorize,
                status: TxStatus::Success,
                amount: eur("100.00"),
                reference: None,
            }],
            bank_details: None,
            totals_only: false,
        }
    }

    fn op(doc: &str, purpose: Purpose, call: PspCall) -> Operation {
        let key = OrderKey::new("t", "c", "1");
        let plan = Plan {
            doc_kind: DocKind::Invoice,
            doc_id: doc.into(),
            purpose,
            psp: Some(call),
            erp: vec![],
        };
        Operation::new(
            &key,
            plan,
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        )
    }

    fn done(mut op: Operation, tx: &str) -> Operation {
        op.psp_done = true;
        op.psp_tx = Some(tx.into());
        op
    }

    #[test]
    fn no_stored_view_or_another_payment_reads_fresh() {
        assert_eq!(known_view(None, "p-1", &[], false), None);
        assert_eq!(known_view(Some(&stored()), "p-2", &[], false), None);
    }

    #[test]
    fn a_pending_event_reads_fresh() {
        assert_eq!(known_view(Some(&stored()), "p-1", &[], true), None);
        assert_eq!(
            known_view(Some(&stored()), "p-1", &[], false),
            Some(stored())
        );
    }

    #[test]
    fn a_view_waiting_for_the_psp_reads_fresh() {
        let mut pending = stored();
        pending.transactions[0].status = TxStatus::Pending;
        assert_eq!(known_view(Some(&pending), "p-1", &[], false), None);
        let mut review = stored();
        review.state = PaymentState::PaymentReview;
        assert_eq!(known_view(Some(&review), "p-1", &[], false), None);
    }

    #[test]
    fn a_call_in_flight_reads_fresh() {
        let mut capture = op(
            "I1",
            Purpose::CaptureInvoice,
            PspCall::Capture {
                amount: eur("60.00"),
            },
        );
        capture.inflight = Some(Step::Psp);
        assert_eq!(known_view(Some(&stored()), "p-1", &[capture], false), None);
    }

    #[test]
    fn planned_but_not_sent_calls_change_nothing() {
        let capture = op(
            "I1",
            Purpose::CaptureInvoice,
            PspCall::Capture {
                amount: eur("60.00"),
            },
        );
        let v = known_view(Some(&stored()), "p-1", &[capture], false).unwrap();
        assert_eq!(v, stored());
    }

    #[test]
    fn finished_capture_and_refund_are_added_once() {
        let capture = done(
            op(
                "I1",
                Purpose::CaptureInvoice,
                PspCall::Capture {
                    amount: eur("60.00"),
                },
            ),
            "chg-1",
        );
        let refund = done(
            op(
                "C1",
                Purpose::RefundCredit,
                PspCall::Refund {
                    amount: eur("20.00"),
                    reason: RefundReason::Credit,
                },
            ),
            "cnl-1",
        );
        let ops = [capture.clone(), refund];
        let v = known_view(Some(&stored()), "p-1", &ops, false).unwrap();
        let pos = v.position().unwrap();
        assert_eq!(pos.charged, eur("60.00"));
        assert_eq!(pos.refunded, eur("20.00"));
        assert_eq!(
            v.find_by_reference(&ledger::psp_reference(&capture.id))
                .map(|t| t.id.as_str()),
            Some("chg-1")
        );
        // A fresh read that has the charge already (by id) is not counted twice.
        let again = known_view(Some(&v), "p-1", &ops, false).unwrap();
        assert_eq!(again.position().unwrap(), pos);
    }

    #[test]
    fn a_finished_reversal_or_shipment_reads_fresh() {
        let reverse = done(
            op(
                "K1",
                Purpose::CancelOrder,
                PspCall::Reverse {
                    amount: eur("10.00"),
                },
            ),
            "cnl-9",
        );
        assert_eq!(known_view(Some(&stored()), "p-1", &[reverse], false), None);
        let ship = done(
            op(
                "I1",
                Purpose::Shipment,
                PspCall::Shipment {
                    invoice_id: "I1".into(),
                },
            ),
            "shp-1",
        );
        assert_eq!(known_view(Some(&stored()), "p-1", &[ship], false), None);
    }
}
