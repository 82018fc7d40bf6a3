//! Money still free to move: the PSP position less every money operation in progress, so two
//! plans can never spend the same authorization or capture twice.

use super::Cx;
use crate::ledger::{OpStatus, PspCall};
use crate::model::Position;
use crate::money::{Money, MoneyError};

/// Money still free to move, after subtracting every operation in progress.
pub(super) struct Budget {
    /// Capturable or reversible: open authorization.
    pub open: Money,
    /// Refundable: captured − refunded.
    pub refundable: Money,
    /// Money operations planned or running but not yet visible at the PSP.
    pub in_progress: bool,
}

impl Budget {
    /// Takes `amount` of the open authorization (a capture or a reversal being planned).
    pub fn take_open(&mut self, amount: Money) -> Result<(), MoneyError> {
        self.open = self.open.checked_sub(amount)?;
        self.in_progress = true;
        Ok(())
    }

    /// Takes `amount` of the refundable money (a refund being planned).
    pub fn take_refundable(&mut self, amount: Money) -> Result<(), MoneyError> {
        self.refundable = self.refundable.checked_sub(amount)?;
        self.in_progress = true;
        Ok(())
    }
}

pub(super) fn neg(m: Money) -> Result<Money, MoneyError> {
    Money::zero(m.currency()).checked_sub(m)
}

impl Cx<'_, '_> {
    /// Free money after everything in progress (planned, running, retrying, or sent with an
    /// unknown outcome) is taken into account.
    pub(super) fn budget(&self, pos: &Position) -> Result<Budget, MoneyError> {
        let mut b = Budget {
            open: pos.remaining()?,
            refundable: pos.refundable()?,
            in_progress: false,
        };
        for op in self.input.ledger {
            if op.psp_done || matches!(op.status, OpStatus::Failed | OpStatus::Cancelled) {
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
                // A payment request moves no money (the customer pays on the PSP's page).
                Some(PspCall::Shipment { .. }) | Some(PspCall::RequestPayment { .. }) | None => {}
            }
        }
        Ok(b)
    }
}
