//! behaviour.md §3.2: the prepayment's transfer arrived: clear the shipping lock paybridge set
//! at release; a partial transfer is a hint.

use super::{Cx, Problem};
use crate::ledger::{DocKind, ErpWrite, Purpose};
use crate::model::{PaymentState, PspPayment};
use crate::money::MoneyError;

impl Cx<'_, '_> {
    /// §3.2: clear our lock when the money arrived.
    pub(super) fn prepayment(&mut self, p: &PspPayment) -> Result<(), MoneyError> {
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
            self.problem(Problem::PartlyPaid);
        }
        Ok(())
    }
}
