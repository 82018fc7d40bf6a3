//! behaviour.md §3.6: an order of a `mode = "link"` method arrives without a payment. paybridge
//! asks the PSP for one (a payment page link, e-mailed to the customer) and waits: a hint while
//! the link is open, an error once it is older than the method's `pending_error_after_hours`.
//! The states are visible in the ERP as order comments: New → Requested (the link op's
//! comment) → Successful (the release, §3.1) or a failed attempt (a comment; the link stays
//! usable) → Booked (the capture, §3.3). Once the PSP reports a payment for the link, the
//! caller hands its id in with the order and the order runs the usual flows, money moved as in
//! expert mode.

use super::{Cx, Problem};
use crate::config::MethodConfig;
use crate::ledger::{DocKind, OpStatus, PspCall, Purpose};
use crate::model::{OrderStatus, PspPayment, TxStatus};

impl Cx<'_, '_> {
    /// No payment yet: ask for one once, then wait for it.
    pub(super) fn payment_link(&mut self, cfg: &MethodConfig) {
        let o = self.order();
        if o.status == OrderStatus::Closed || o.fully_cancelled() {
            return; // nothing left to pay for
        }
        let id = o.order_id.clone();
        let Some(op) = self.op(DocKind::Order, &id, Purpose::PaymentLink) else {
            let c = self.comment(&format!(
                "payment link for {} e-mailed to the customer; waiting for the payment",
                o.total
            ));
            let call = PspCall::RequestPayment { amount: o.total };
            self.plan(
                DocKind::Order,
                &id,
                Purpose::PaymentLink,
                Some(call),
                vec![c],
            );
            return;
        };
        if op.status != OpStatus::Done {
            return; // being sent; a failure is reported as a failed operation
        }
        let since = op.updated_at;
        let hours = cfg.pending_error_after_hours;
        let deadline = since + chrono::Duration::hours(i64::from(hours));
        if self.input.now >= deadline {
            self.problem(Problem::PaymentLinkUnpaid { since, hours });
        } else {
            self.problem(Problem::PaymentLinkOpen { since });
            self.recheck(deadline);
        }
    }

    /// A payment started on the link that failed (the customer cancelled on the PSP's page):
    /// one comment, a hint, and the link stays usable; nothing is released or locked.
    /// `true` when that is the case.
    pub(super) fn link_payment_failed(&mut self, cfg: &MethodConfig, p: &PspPayment) -> bool {
        let failed = p.initial().is_none_or(|t| t.status == TxStatus::Error);
        if !failed || self.order().status != OrderStatus::Hold {
            return false;
        }
        let c = self.comment(&format!(
            "payment {} on the payment link was not completed; the link stays usable",
            p.payment_id
        ));
        self.plan(
            DocKind::Order,
            &p.payment_id,
            Purpose::PaymentLinkFailed,
            None,
            vec![c],
        );
        self.problem(Problem::PaymentLinkFailed {
            payment: p.payment_id.clone(),
        });
        self.payment_link(cfg);
        true
    }
}
