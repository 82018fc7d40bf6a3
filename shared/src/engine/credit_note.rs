//! behaviour.md §3.5: a credit note is refunded with reason "return" and booked negative in
//! the customer account with the return event; one already settled in the ERP, or returning
//! money captured before or outside paybridge, is an error and moves nothing. Without a link to
//! its invoice the credit note's money is judged from the ledger and the PSP: on an order with
//! foreign captures it is refunded only as far as paybridge's own captures (less what was
//! refunded of them) cover it.

use super::budget::{Budget, neg};
use super::{Cx, Facts, Problem};
use crate::ledger::{DocKind, ErpWrite, OpStatus, PspCall, Purpose, RefundReason};
use crate::model::{CreditNote, MethodFamily};
use crate::money::{Money, MoneyError};

impl Cx<'_, '_> {
    /// §3.5: refund credit notes, book them; refuse returns on invoices captured outside paybridge.
    pub(super) fn credit_notes(
        &mut self,
        f: &Facts<'_>,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        let mut ours = self.our_refundable(f)?;
        for cn in &self.order().credit_notes {
            if self.has_op(DocKind::CreditNote, &cn.credit_id, Purpose::RefundCredit) {
                continue;
            }
            if let Some(problem) = self.refused(cn, ours)? {
                self.problem(problem);
                continue;
            }
            if cn.amount.cmp_to(&budget.refundable)?.is_gt() {
                let money_may_come = budget.in_progress
                    || (matches!(
                        f.family,
                        MethodFamily::Prepayment | MethodFamily::InvoiceLegacy
                    ) && !f.p.received_in_full()?);
                self.problem(if money_may_come {
                    Problem::RefundWaits {
                        credit: cn.credit_id.clone(),
                    }
                } else {
                    Problem::RefundExceeds {
                        doc: cn.credit_id.clone(),
                        what: "credit note",
                        amount: cn.amount,
                        refundable: budget.refundable,
                    }
                });
                continue;
            }
            budget.take_refundable(cn.amount)?;
            if let Some(o) = ours.as_mut() {
                *o = o.saturating_sub(cn.amount)?;
            }
            self.refund_credit(f, cn)?;
        }
        Ok(())
    }

    /// Why a credit note must not be refunded automatically, if it must not. `ours`: what
    /// paybridge captured and has not refunded, when the order also holds foreign captures.
    fn refused(&self, cn: &CreditNote, ours: Option<Money>) -> Result<Option<Problem>, MoneyError> {
        let foreign = |invoice: String| {
            Some(Problem::ForeignCapture {
                credit: cn.credit_id.clone(),
                invoice,
            })
        };
        if cn.settled {
            return Ok(Some(Problem::CreditSettled {
                credit: cn.credit_id.clone(),
            }));
        }
        let invoices = &self.order().invoices;
        if let Some(inv_id) = &cn.invoice_id {
            let linked_foreign = invoices
                .iter()
                .any(|i| &i.invoice_id == inv_id && self.captured_elsewhere(i));
            return Ok(if linked_foreign {
                foreign(format!("invoice {inv_id}"))
            } else {
                None
            });
        }
        match ours {
            Some(left) if cn.amount.cmp_to(&left)?.is_gt() => {
                let names: Vec<&str> = invoices
                    .iter()
                    .filter(|i| self.captured_elsewhere(i))
                    .map(|i| i.invoice_id.as_str())
                    .collect();
                Ok(foreign(match names.as_slice() {
                    [] => "a capture made outside paybridge".to_string(),
                    n => format!(
                        "invoice {} (the credit note names no invoice)",
                        n.join(", ")
                    ),
                }))
            }
            _ => Ok(None),
        }
    }

    /// For families paybridge captures: when the order holds money captured before or outside
    /// paybridge (an invoice marked paid that is not ours, or PSP charges beyond our captures),
    /// what paybridge itself captured less every refund in the ledger; `None` when all
    /// captured money is paybridge's (then the PSP's refundable amount is the only limit).
    fn our_refundable(&self, f: &Facts<'_>) -> Result<Option<Money>, MoneyError> {
        if !matches!(
            f.family,
            MethodFamily::AuthorizeCapture
                | MethodFamily::PaylaterInvoice
                | MethodFamily::PaylaterDebit
        ) {
            return Ok(None);
        }
        let cur = f.p.currency;
        let mut captured = Money::zero(cur);
        let mut refunded = Money::zero(cur);
        for op in self.input.ledger {
            match &op.plan.psp {
                Some(PspCall::Capture { amount }) if op.psp_done => {
                    captured = captured.checked_add(*amount)?;
                }
                Some(PspCall::Refund { amount, .. })
                    if !matches!(op.status, OpStatus::Failed | OpStatus::Cancelled) =>
                {
                    refunded = refunded.checked_add(*amount)?;
                }
                _ => {}
            }
        }
        let charged = f.p.position()?.charged;
        let foreign_money = charged.cmp_to(&captured)?.is_gt();
        let foreign_invoice = self
            .order()
            .invoices
            .iter()
            .any(|i| self.captured_elsewhere(i));
        if !(foreign_money || foreign_invoice) {
            return Ok(None);
        }
        Ok(Some(captured.saturating_sub(refunded)?))
    }

    fn refund_credit(&mut self, f: &Facts<'_>, cn: &CreditNote) -> Result<(), MoneyError> {
        let booking = ErpWrite::ManualBooking {
            amount: neg(cn.amount)?,
            event_code: f.cfg.return_event.clone(),
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
        Ok(())
    }
}
