//! behaviour.md §3.4: a whole order cancelled reverses what is still authorized and refunds
//! what was taken; cancelled lines are refunded one by one (captured up front) or sent together
//! as one reversal or refund (prepayment, invoice, Paylater invoice), never twice.

use super::budget::Budget;
use super::{Cx, Facts, Problem};
use crate::config::Mode;
use crate::ledger::{DocKind, OpStatus, PspCall, Purpose, RefundReason};
use crate::model::{MethodFamily, OrderLine, OrderStatus, TxKind, TxStatus};
use crate::money::{Money, MoneyError};

impl Cx<'_, '_> {
    /// §3.4: whole-order and line cancellations.
    pub(super) fn cancellations(
        &mut self,
        f: &Facts<'_>,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let received = f.family == MethodFamily::Prepayment && f.p.received_in_full()?;
        let charged_any =
            f.p.transactions
                .iter()
                .any(|t| t.kind == TxKind::Charge && t.status == TxStatus::Success);
        if o.fully_cancelled() {
            return self.cancel_order(f, budget, charged_any);
        }
        let cancelled: Vec<&OrderLine> = o.cancelled_lines().collect();
        if cancelled.is_empty() {
            return Ok(());
        }
        match f.family {
            MethodFamily::AuthorizeCapture if f.mode == Mode::Expert => Ok(()), // closed after the last delivery
            MethodFamily::AuthorizeCapture | MethodFamily::ChargedInShop => {
                if o.status != OrderStatus::Closed {
                    return Ok(()); // sent once the order is CLOSED
                }
                for line in cancelled {
                    self.refund_line(line, budget)?;
                }
                Ok(())
            }
            MethodFamily::Prepayment
            | MethodFamily::InvoiceLegacy
            | MethodFamily::PaylaterInvoice => {
                let due = match f.family {
                    MethodFamily::Prepayment => o.status == OrderStatus::Closed || received,
                    MethodFamily::InvoiceLegacy => o.status == OrderStatus::Closed,
                    _ => charged_any || o.status == OrderStatus::Closed,
                };
                if !due {
                    return Ok(());
                }
                self.cancel_lines_together(cancelled, received, budget)
            }
            // The remainder expires with the authorization: nothing is sent.
            MethodFamily::PaylaterDebit => Ok(()),
        }
    }

    /// The whole order cancelled: reverse what is still authorized, refund what was taken
    /// (prepayment: reverse what is still due, refund whatever was received).
    fn cancel_order(
        &mut self,
        f: &Facts<'_>,
        budget: &mut Budget,
        charged_any: bool,
    ) -> Result<(), MoneyError> {
        let id = self.order().order_id.clone();
        let reverse = match f.family {
            MethodFamily::AuthorizeCapture
            | MethodFamily::InvoiceLegacy
            | MethodFamily::Prepayment => true,
            MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit => !charged_any,
            MethodFamily::ChargedInShop => false,
        };
        let refund = match f.family {
            MethodFamily::AuthorizeCapture => f.mode == Mode::Standard,
            MethodFamily::ChargedInShop | MethodFamily::Prepayment => true,
            _ => false,
        };
        if reverse
            && budget.open.is_positive()
            && !self.has_op(DocKind::Order, &id, Purpose::CancelOrder)
        {
            let amount = budget.open;
            budget.take_open(amount)?;
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
            let amount = budget.refundable;
            budget.take_refundable(amount)?;
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
        Ok(())
    }

    /// One cancelled line of a captured payment, refunded on its own.
    fn refund_line(&mut self, line: &OrderLine, budget: &mut Budget) -> Result<(), MoneyError> {
        if self.has_op(DocKind::Line, &line.line_id, Purpose::RefundLine) {
            return Ok(());
        }
        if line.amount.cmp_to(&budget.refundable)?.is_gt() {
            if !budget.in_progress {
                self.problem(Problem::RefundExceeds {
                    doc: line.line_id.clone(),
                    what: "cancelled line",
                    amount: line.amount,
                    refundable: budget.refundable,
                });
            }
            return Ok(());
        }
        budget.take_refundable(line.amount)?;
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
        Ok(())
    }

    /// Lines not covered by an earlier aggregate, sent as one reversal (money not received
    /// yet) or one refund (received).
    fn cancel_lines_together(
        &mut self,
        cancelled: Vec<&OrderLine>,
        received: bool,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        let covered: Vec<&str> = self
            .input
            .ledger
            .iter()
            // a cancelled one (never started: hands-off) covers nothing
            .filter(|op| {
                op.plan.purpose == Purpose::CancelLines && op.status != OpStatus::Cancelled
            })
            .flat_map(|op| op.plan.doc_id.split('+'))
            .collect();
        let new: Vec<_> = cancelled
            .into_iter()
            .filter(|l| !covered.contains(&l.line_id.as_str()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let amount = Money::sum(self.order().total.currency(), new.iter().map(|l| &l.amount))?;
        let doc = new
            .iter()
            .map(|l| l.line_id.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let (left, what) = if received {
            (budget.refundable, "refundable")
        } else {
            (budget.open, "open")
        };
        if amount.cmp_to(&left)?.is_gt() {
            self.problem(Problem::CancelLinesExceed { amount, left, what });
            return Ok(());
        }
        let call = if received {
            budget.take_refundable(amount)?;
            PspCall::Refund {
                amount,
                reason: RefundReason::Cancel,
            }
        } else {
            budget.take_open(amount)?;
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
        Ok(())
    }
}
