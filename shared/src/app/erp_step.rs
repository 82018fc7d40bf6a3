//! One ERP write of an operation. ERP writes are not idempotent, so a write whose outcome is
//! unknown (in-flight mark) is read back before it is sent again; a reply that cannot be read
//! keeps the mark.
//!
//! One mark can cover a sequence of writes: a write that can be read back
//! ([`Erp::can_read_back`]) and comes right after a write of the same attempt is sent without a
//! mark of its own. The stored mark is then the sequence's first, and the attempt that finds a
//! write of the sequence applied reads the next one back too before it sends anything.

use super::operation::Next;
use super::{App, AppError, StepResult};
use crate::erp::{Erp, ErpError};
use crate::ledger::{ErpWrite, Operation, OrderKey, Step};
use crate::model::ErpOrder;
use crate::store::StoreError;
use chrono::{DateTime, Utc};

impl App {
    /// Write `index` of the operation: read back if it may have happened, else send it.
    /// `chained`: write `index - 1` was done in this attempt.
    pub(super) async fn erp_step(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        facts: &ErpOrder,
        index: usize,
        chained: bool,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        if self.quiet_until(now).is_some() {
            return Ok(Some(StepResult::Retry("ERP quiet hours".into())));
        }
        let erp = self
            .erps
            .get(&key.conn)
            .ok_or_else(|| AppError::UnknownConnection(key.conn.clone()))?;
        let write = op.plan.erp[index].clone();
        if op.inflight == Some(Step::Erp { index }) {
            if let Some(lost) = self.durable(op, now).await? {
                return Ok(Some(lost));
            }
            match erp.was_applied(&key.order_id, &write, &op.id).await {
                Ok(Some(true)) => {
                    op.erp_succeeded(now)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    op.unsaved = true;
                    // The next write may have been sent under this write's mark.
                    if let Some(next) = op.plan.erp.get(index + 1)
                        && erp.can_read_back(&key.order_id, next)
                    {
                        op.begin(Step::Erp { index: index + 1 }, now)
                            .map_err(|e| StoreError::Backend(e.to_string()))?;
                    }
                    return Ok(None);
                }
                Ok(Some(false)) => {}
                Ok(None) => {
                    return Ok(Some(StepResult::Failed(format!(
                        "ERP write {index} may have been applied and cannot be read back: check by hand"
                    ))));
                }
                Err(e) => return Ok(Some(StepResult::Retry(format!("ERP read-back: {e}")))),
            }
        }
        // Read back as not applied (or never sent): the write did not happen.
        if let Some(why) = self.out_of_attempts(op) {
            op.inflight = None;
            return Ok(Some(StepResult::Failed(why)));
        }
        op.begin(Step::Erp { index }, now)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        // Under the stored mark of the sequence this write continues; else its own mark.
        let covered = chained && erp.can_read_back(&key.order_id, &write);
        if !covered && !self.save(op, now).await? {
            return Ok(Some(StepResult::Lost));
        }
        self.send_erp(op, facts, erp.as_ref(), &write, now).await
    }

    /// Sends one write and records what its answer means.
    async fn send_erp(
        &self,
        op: &mut Operation,
        facts: &ErpOrder,
        erp: &dyn Erp,
        write: &ErpWrite,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        let result = match erp.apply(facts, write, &op.id).await {
            Ok(()) => {
                op.erp_succeeded(now)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                op.unsaved = true; // saved with the next mark or the end
                return Ok(None);
            }
            Err(ErpError::Unavailable(m)) => {
                op.inflight = None;
                StepResult::Retry(format!("ERP unavailable: {m}"))
            }
            Err(ErpError::Unknown(m)) => StepResult::Retry(format!("ERP outcome unknown: {m}")),
            // A reply that cannot be read (a proxy's HTML page, a cut-off body) says nothing
            // about the write: keep the in-flight mark, so the next attempt reads back before
            // it writes again.
            Err(ErpError::BadReply(m)) => {
                StepResult::Retry(format!("ERP reply invalid, outcome unknown: {m}"))
            }
            Err(e @ ErpError::Refused(_)) => {
                op.inflight = None;
                StepResult::Failed(e.to_string())
            }
        };
        Ok(Some(result))
    }
}
