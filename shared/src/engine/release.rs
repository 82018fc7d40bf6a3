//! behaviour.md §3.1: is the payment accepted and does it match the order? Then release the
//! order (standard mode: capture the whole amount first), keep it on HOLD while the payment is
//! pending (an error once it has been pending too long), or release it with a shipping lock and
//! an error. Prepayment and the legacy invoice / invoice secured types get the transfer details
//! written at release (seed 000: the customer-service fields).

use super::{Cx, Facts, Problem, comments::LOCKED};
use crate::config::Mode;
use crate::ledger::{DocKind, ErpWrite, OpStatus, PspCall, Purpose};
use crate::model::{MethodFamily, PaymentState, Position, PspPayment, TxStatus};
use crate::money::MoneyError;

/// The outcome of the authorization check.
enum Check {
    Accept,
    Hold(String),
    Reject(String),
}

impl Cx<'_, '_> {
    /// Released already (in any of the three ways), or being released in this decision.
    pub(super) fn released(&self) -> bool {
        let id = &self.order().order_id;
        [
            Purpose::Release,
            Purpose::ReleaseLocked,
            Purpose::ReleasePrepayment,
        ]
        .into_iter()
        .any(|p| self.has_op(DocKind::Order, id, p))
    }

    /// §3.1.4: release with shipping lock, and an error.
    pub(super) fn release_locked(&mut self, reason: &str) {
        let id = self.order().order_id.clone();
        let c = self.comment(&format!("{LOCKED}{reason}"));
        self.plan(
            DocKind::Order,
            &id,
            Purpose::ReleaseLocked,
            None,
            vec![ErpWrite::SetShippingLock, ErpWrite::Release, c],
        );
        self.problem(Problem::AuthorizationCheck(reason.to_string()));
    }

    /// §3.1: is the payment accepted, and does it match the order?
    fn check(
        &mut self,
        p: &PspPayment,
        family: MethodFamily,
        tolerance: u32,
    ) -> Result<Check, MoneyError> {
        let o = self.order();
        let refused = match p.state {
            PaymentState::Canceled => Some("the payment is cancelled at the PSP"),
            PaymentState::PaymentReview => Some("the payment is in review at the PSP"),
            PaymentState::Chargeback => Some("the payment was charged back"),
            _ => None,
        };
        if let Some(why) = refused {
            return Ok(Check::Reject(why.into()));
        }
        let Some(init) = p.initial() else {
            return Ok(Check::Reject("the PSP payment has no authorization".into()));
        };
        match init.status {
            TxStatus::Error => {
                return Ok(Check::Reject("the authorization failed at the PSP".into()));
            }
            TxStatus::Pending
                if !matches!(
                    family,
                    MethodFamily::Prepayment | MethodFamily::InvoiceLegacy
                ) =>
            {
                return Ok(Check::Hold(
                    "the payment is still pending at the PSP".into(),
                ));
            }
            _ => {}
        }
        if !init.amount.within(&o.total, tolerance)? {
            return Ok(Check::Reject(format!(
                "amount mismatch: order {} / PSP {}",
                o.total, init.amount
            )));
        }
        if init.amount != o.total {
            self.out.notes.push(format!(
                "rounding difference absorbed at release: order {} / PSP {}",
                o.total, init.amount
            ));
        }
        Ok(Check::Accept)
    }

    /// Releases the order as the check, the family and the mode say.
    pub(super) fn release(&mut self, f: &Facts<'_>, pos: &Position) -> Result<(), MoneyError> {
        let check = match self.check(f.p, f.family, f.cfg.rounding_tolerance)? {
            Check::Accept => match self.expired_at_release(f, pos)? {
                Some(why) => Check::Reject(why),
                None => Check::Accept,
            },
            other => other,
        };
        match check {
            Check::Hold(why) => self.pending(f, why),
            Check::Reject(why) => self.release_locked(&why),
            Check::Accept if f.family == MethodFamily::Prepayment => {
                self.release_prepayment(f.p)?
            }
            Check::Accept if f.family == MethodFamily::InvoiceLegacy => {
                self.release_invoice(f.p)?
            }
            Check::Accept if f.mode == Mode::Standard && pos.remaining()?.is_positive() => {
                self.capture_before_release(pos)?
            }
            Check::Accept => self.release_plain("authorization checked, order released"),
        }
        Ok(())
    }

    /// Still pending: a hint while the wait is short, an error once it has lasted
    /// `pending_error_after_hours` since paybridge first saw the order. HOLD either way.
    fn pending(&mut self, f: &Facts<'_>, why: String) {
        let since = self.input.first_seen;
        let hours = f.cfg.pending_error_after_hours;
        let deadline = since + chrono::Duration::hours(i64::from(hours));
        if self.input.now >= deadline {
            self.problem(Problem::PendingTooLong { since, hours });
        } else {
            self.problem(Problem::Pending(why));
            self.recheck(deadline);
        }
    }

    /// The transfer details for the customer, or a hint that the PSP gave none.
    fn transfer_details(&mut self, p: &PspPayment) -> Option<ErpWrite> {
        match &p.bank_details {
            Some(d) => Some(ErpWrite::TransferDetails { details: d.clone() }),
            None => {
                self.problem(Problem::NoBankDetails);
                None
            }
        }
    }

    /// Legacy invoice / invoice secured types: released (the customer pays after delivery)
    /// with the transfer details the customer pays to, unless paid already.
    fn release_invoice(&mut self, p: &PspPayment) -> Result<(), MoneyError> {
        if p.received_in_full()? {
            self.release_plain("invoice payment received, order released");
            return Ok(());
        }
        let mut w: Vec<ErpWrite> = self.transfer_details(p).into_iter().collect();
        w.push(ErpWrite::Release);
        w.push(self.comment("authorization checked, order released with the transfer details"));
        let id = self.order().order_id.clone();
        self.plan(DocKind::Order, &id, Purpose::Release, None, w);
        Ok(())
    }

    /// A plain release with its comment.
    fn release_plain(&mut self, comment: &str) {
        let id = self.order().order_id.clone();
        let c = self.comment(comment);
        self.plan(
            DocKind::Order,
            &id,
            Purpose::Release,
            None,
            vec![ErpWrite::Release, c],
        );
    }

    /// §3.2 at release: released at once when paid, else with shipping lock and the transfer
    /// details for the customer.
    fn release_prepayment(&mut self, p: &PspPayment) -> Result<(), MoneyError> {
        if p.received_in_full()? {
            self.release_plain("prepayment received, order released");
            return Ok(());
        }
        let mut w: Vec<ErpWrite> = self.transfer_details(p).into_iter().collect();
        w.push(ErpWrite::SetShippingLock);
        w.push(ErpWrite::Release);
        w.push(self.comment("released with shipping lock until the prepayment is received"));
        let id = self.order().order_id.clone();
        self.plan(DocKind::Order, &id, Purpose::ReleasePrepayment, None, w);
        Ok(())
    }

    /// Standard mode (§2): capture everything, then release once the capture is done.
    fn capture_before_release(&mut self, pos: &Position) -> Result<(), MoneyError> {
        let id = self.order().order_id.clone();
        match self
            .op(DocKind::Order, &id, Purpose::CaptureOrder)
            .map(|o| o.status)
        {
            None => {
                // Budgeted like every money call: nothing in progress may overlap.
                let budget = self.budget(pos)?;
                if budget.in_progress || !budget.open.is_positive() {
                    return Ok(());
                }
                let amount = budget.open;
                let c = self.comment(&format!("captured {amount} (standard mode)"));
                self.plan(
                    DocKind::Order,
                    &id,
                    Purpose::CaptureOrder,
                    Some(PspCall::Capture { amount }),
                    vec![c],
                );
            }
            Some(OpStatus::Failed) => self.release_locked("the capture before release failed"),
            Some(OpStatus::Done) => self.release_plain("captured and released"),
            Some(_) => {} // in progress; the release follows when it is done
        }
        Ok(())
    }
}
