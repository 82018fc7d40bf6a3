//! behaviour.md §3.5: a credit note is refunded with reason "return" and booked negative in
//! the customer account with the return event; one already settled in the ERP, or returning an
//! invoice captured before paybridge handled the order, is an error and moves nothing.

use super::budget::{Budget, neg};
use super::{Cx, Facts, Problem};
use crate::ledger::{DocKind, ErpWrite, PspCall, Purpose, RefundReason};
use crate::model::{CreditNote, MethodFamily};
use crate::money::MoneyError;

impl Cx<'_, '_> {
    /// §3.5: refund credit notes, book them; refuse returns on invoices captured outside paybridge.
    pub(super) fn credit_notes(
        &mut self,
        f: &Facts<'_>,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        for cn in &self.order().credit_notes {
            if self.has_op(DocKind::CreditNote, &cn.credit_id, Purpose::RefundCredit) {
                continue;
            }
            if let Some(problem) = self.refused(cn) {
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
            self.refund_credit(f, cn)?;
        }
        Ok(())
    }

    /// Why a credit note must not be refunded automatically, if it must not.
    fn refused(&self, cn: &CreditNote) -> Option<Problem> {
        if cn.settled {
            return Some(Problem::CreditSettled {
                credit: cn.credit_id.clone(),
            });
        }
        let inv_id = cn.invoice_id.as_ref()?;
        let foreign = self
            .order()
            .invoices
            .iter()
            .any(|i| &i.invoice_id == inv_id && i.captured)
            && !self.invoice_ours(inv_id);
        foreign.then(|| Problem::ForeignCapture {
            credit: cn.credit_id.clone(),
            invoice: inv_id.clone(),
        })
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
