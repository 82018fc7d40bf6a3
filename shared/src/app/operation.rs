//! The steps of one claimed operation, in order: its PSP call (if any, [`super::psp_step`]),
//! then its ERP writes ([`super::erp_step`]), each marked in flight in the ledger before it is
//! sent and recorded done with the next mark or the operation's end.

use super::{App, AppError, StepResult};
use crate::config::MethodConfig;
use crate::ledger::{self, Operation, OrderKey, Step};
use crate::store::repo::OrderRecord;
use chrono::{DateTime, Utc};

/// The case for a step: go on with the next step, or stop the operation here with a result.
pub(super) type Next = Option<StepResult>;

impl App {
    /// Runs the operation's remaining steps; stops at the first that cannot finish now.
    pub(super) async fn steps(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        rec: &OrderRecord,
        cfg: &MethodConfig,
        now: DateTime<Utc>,
    ) -> Result<StepResult, AppError> {
        let reference = ledger::psp_reference(&op.id);
        let Some(facts) = rec.facts.as_ref() else {
            return Ok(StepResult::Failed("the order's facts are gone".into()));
        };
        // Whether the step before was one of the operation's ERP writes, done in this attempt.
        let mut after_write = false;
        while let Some(step) = op.next_step() {
            let next = match step {
                Step::Psp => self.psp_step(key, op, rec, cfg, &reference, now).await?,
                Step::Erp { index } => {
                    let chained = after_write;
                    self.erp_step(key, op, facts, index, chained, now).await?
                }
            };
            if let Some(result) = next {
                return Ok(result);
            }
            after_write = matches!(step, Step::Erp { .. });
        }
        Ok(StepResult::Finished)
    }

    /// Saves what is not saved yet before a request leaves the process (the claim, a step's
    /// result): `Some(Lost)` when our claim was taken over meanwhile. A step's result is
    /// otherwise saved with the next in-flight mark or with the operation's end, so one write
    /// records both; a crash in between leaves the step in flight, and the next attempt finds
    /// its outcome by looking (reconciliation, read-back) instead of sending again.
    pub(super) async fn durable(
        &self,
        op: &mut Operation,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        if !op.unsaved {
            return Ok(None);
        }
        Ok((!self.save(op, now).await?).then_some(StepResult::Lost))
    }
}
