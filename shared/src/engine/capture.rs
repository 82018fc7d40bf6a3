//! behaviour.md §3.3: each invoice of a reserved payment is captured for its amount (expert
//! mode, Paylater), marked captured in the ERP with the invoice event in the same operation; in
//! expert mode the payment is closed after the last delivery so the rest cannot be captured.
//! Invoices of families captured up front are verified and booked instead ([`super::booking`]).
//! An invoice the ERP already marks paid that paybridge did not capture is left alone with a
//! hint; after an authorization expired no capture is planned ([`super::authorization`]).

use super::authorization::Lifetime;
use super::budget::Budget;
use super::{Cx, Facts, Problem};
use crate::config::Mode;
use crate::ledger::{DocKind, ErpWrite, PspCall, Purpose};
use crate::model::{Invoice, MethodFamily, OrderStatus, Position};
use crate::money::{Money, MoneyError};

impl Cx<'_, '_> {
    /// An invoice handled by us: captured, booked, or reported.
    pub(super) fn invoice_ours(&self, invoice_id: &str) -> bool {
        [Purpose::CaptureInvoice, Purpose::BookInvoice]
            .into_iter()
            .any(|p| self.has_op(DocKind::Invoice, invoice_id, p))
    }

    /// Marked captured in the ERP, and not by paybridge.
    pub(super) fn captured_elsewhere(&self, inv: &Invoice) -> bool {
        inv.captured && !self.invoice_ours(&inv.invoice_id)
    }

    /// §3.3: capture / verify / book each invoice, then close the payment if it is time.
    pub(super) fn invoices(
        &mut self,
        f: &Facts<'_>,
        pos: &Position,
        budget: &mut Budget,
        lifetime: Lifetime,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let invoiced = Money::sum(o.total.currency(), o.invoices.iter().map(|i| &i.amount))?;
        let per_invoice = matches!(
            f.family,
            MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit
        ) || (f.family == MethodFamily::AuthorizeCapture
            && f.mode == Mode::Expert);
        for inv in &o.invoices {
            if self.invoice_ours(&inv.invoice_id) {
                continue;
            }
            if inv.captured {
                // Captured by someone else (before paybridge, by hand): left alone, said so; a
                // later return of it is refused.
                self.problem(Problem::CapturedElsewhere {
                    invoice: inv.invoice_id.clone(),
                });
                continue;
            }
            if per_invoice && lifetime == Lifetime::Expired {
                continue; // the authorization_expired error names it
            }
            let mark = ErpWrite::MarkInvoiceCaptured {
                invoice_id: inv.invoice_id.clone(),
                event_code: f.cfg.invoice_event.clone(),
                amount: inv.amount,
            };
            if per_invoice {
                self.capture_invoice(inv, mark, budget, f.cfg.rounding_tolerance)?;
            } else {
                self.book_invoice(f, inv, mark, pos, invoiced)?;
            }
        }
        self.close_after_last_delivery(f, budget)
    }

    /// Captures one invoice's amount from the open authorization (a rounding difference within
    /// the tolerance is absorbed; more than is open is an error).
    fn capture_invoice(
        &mut self,
        inv: &Invoice,
        mark: ErpWrite,
        budget: &mut Budget,
        tolerance: u32,
    ) -> Result<(), MoneyError> {
        let mut amount = inv.amount;
        if amount.cmp_to(&budget.open)?.is_gt() {
            if budget.in_progress {
                return Ok(()); // wait for running operations to settle
            }
            if !(amount.le_with_tolerance(&budget.open, tolerance)? && budget.open.is_positive()) {
                self.problem(Problem::CaptureExceeds {
                    invoice: inv.invoice_id.clone(),
                    amount: inv.amount,
                    open: budget.open,
                });
                return Ok(());
            }
            self.out.notes.push(format!(
                "invoice {}: rounding difference {} absorbed",
                inv.invoice_id,
                amount.checked_sub(budget.open)?
            ));
            amount = budget.open;
        }
        budget.take_open(amount)?;
        let c = self.comment(&format!("invoice {} captured: {amount}", inv.invoice_id));
        self.plan(
            DocKind::Invoice,
            &inv.invoice_id,
            Purpose::CaptureInvoice,
            Some(PspCall::Capture { amount }),
            vec![mark, c],
        );
        Ok(())
    }

    /// Expert mode: after the last delivery close the payment so the rest cannot be captured.
    fn close_after_last_delivery(
        &mut self,
        f: &Facts<'_>,
        budget: &mut Budget,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let due = f.family == MethodFamily::AuthorizeCapture
            && f.mode == Mode::Expert
            && o.status == OrderStatus::Closed
            && !o.fully_cancelled()
            && !budget.in_progress
            && budget.open.is_positive()
            && o.invoices.iter().all(|i| {
                self.done(DocKind::Invoice, &i.invoice_id, Purpose::CaptureInvoice)
                    || self.captured_elsewhere(i)
            });
        if !due {
            return Ok(());
        }
        let amount = budget.open;
        budget.take_open(amount)?;
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
        Ok(())
    }
}
