//! behaviour.md §3.3 for families whose money is not captured per invoice: the invoice is
//! verified against what was captured (standard mode, charged in the shop) or received
//! (prepayment), the shipment is reported where the method needs it, and the invoice is booked
//! in the customer account with the invoice event.

use super::{Cx, Facts, Problem};
use crate::ledger::{DocKind, ErpWrite, PspCall, Purpose};
use crate::model::{Invoice, MethodFamily, OrderStatus, Position};
use crate::money::{Money, MoneyError};

impl Cx<'_, '_> {
    /// Verifies and books one invoice of a family captured up front, prepaid or invoiced.
    pub(super) fn book_invoice(
        &mut self,
        f: &Facts<'_>,
        inv: &Invoice,
        mark: ErpWrite,
        pos: &Position,
        invoiced: Money,
    ) -> Result<(), MoneyError> {
        match f.family {
            MethodFamily::AuthorizeCapture | MethodFamily::ChargedInShop => {
                self.book_captured(f, inv, mark, pos, invoiced)
            }
            MethodFamily::Prepayment => self.book_prepaid(f, inv, mark, pos, invoiced),
            MethodFamily::InvoiceLegacy => {
                self.book_legacy_invoice(f, inv, mark);
                Ok(())
            }
            MethodFamily::PaylaterInvoice | MethodFamily::PaylaterDebit => {
                unreachable!("captured per invoice")
            }
        }
    }

    fn plan_booking(&mut self, inv: &Invoice, mark: ErpWrite, comment: &str) {
        let c = self.comment(comment);
        self.plan(
            DocKind::Invoice,
            &inv.invoice_id,
            Purpose::BookInvoice,
            None,
            vec![mark, c],
        );
    }

    /// Captured up front (standard mode or in the shop): verify, then book.
    fn book_captured(
        &mut self,
        f: &Facts<'_>,
        inv: &Invoice,
        mark: ErpWrite,
        pos: &Position,
        invoiced: Money,
    ) -> Result<(), MoneyError> {
        if !pos.charged.is_positive() {
            return Ok(()); // the capture before release is not through yet
        }
        let o = self.order();
        let tolerance = f.cfg.rounding_tolerance;
        if !invoiced.le_with_tolerance(&o.total, tolerance)?
            || !invoiced.le_with_tolerance(&pos.charged, tolerance)?
        {
            self.problem(Problem::InvoicesExceedOrder {
                invoiced,
                total: o.total,
                charged: pos.charged,
            });
            return Ok(());
        }
        let text = format!(
            "invoice {} checked against the capture and booked",
            inv.invoice_id
        );
        self.plan_booking(inv, mark, &text);
        Ok(())
    }

    /// §3.2: shipped before receipt → no booking, ever: the operator was told to book it by
    /// hand (the problem's ERP comment in the ledger remembers it). Otherwise booked once the
    /// order is closed, for no more than arrived.
    fn book_prepaid(
        &mut self,
        f: &Facts<'_>,
        inv: &Invoice,
        mark: ErpWrite,
        pos: &Position,
        invoiced: Money,
    ) -> Result<(), MoneyError> {
        let o = self.order();
        let problem = Problem::ShippedBeforeReceipt {
            invoice: inv.invoice_id.clone(),
        };
        let flagged = self.has_op(
            DocKind::Order,
            &format!("{}:{}", o.order_id, problem.code()),
            Purpose::Problem,
        );
        if flagged || !f.p.received_in_full()? {
            self.problem(problem);
            return Ok(());
        }
        if o.status != OrderStatus::Closed {
            return Ok(());
        }
        // Book only what arrived: invoices above the money received (the PSP payment was for
        // less than the order) are a human's decision.
        if !invoiced.le_with_tolerance(&pos.charged, f.cfg.rounding_tolerance)? {
            self.problem(Problem::InvoicesExceedReceived {
                invoiced,
                received: pos.charged,
            });
            return Ok(());
        }
        let text = format!("prepayment booked for invoice {}", inv.invoice_id);
        self.plan_booking(inv, mark, &text);
        Ok(())
    }

    /// Invoice methods: report the shipment where the method needs it; book once closed.
    fn book_legacy_invoice(&mut self, f: &Facts<'_>, inv: &Invoice, mark: ErpWrite) {
        if f.p.method.needs_shipment_call()
            && !self.has_op(DocKind::Invoice, &inv.invoice_id, Purpose::Shipment)
        {
            let c = self.comment(&format!("shipment of invoice {} reported", inv.invoice_id));
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
        if self.order().status == OrderStatus::Closed {
            let text = format!("invoice {} booked", inv.invoice_id);
            self.plan_booking(inv, mark, &text);
        }
    }
}
