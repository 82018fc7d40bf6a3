//! The steps of one claimed operation, in order: its PSP call (if any, [`super::psp_step`]),
//! then its ERP writes ([`super::erp_step`]), each recorded in the ledger before and after it
//! is sent.

use super::{App, AppError, StepResult};
use crate::config::MethodConfig;
use crate::ledger::{self, Operation, OrderKey, Step};
use crate::model::ErpOrder;
use chrono::{DateTime, Utc};

/// The case for a step: go on with the next step, or stop the operation here with a result.
pub(super) type Next = Option<StepResult>;

impl App {
    /// Runs the operation's remaining steps; stops at the first that cannot finish now.
    pub(super) async fn steps(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        facts: &ErpOrder,
        cfg: &MethodConfig,
        now: DateTime<Utc>,
    ) -> Result<StepResult, AppError> {
        let reference = ledger::psp_reference(&op.id);
        while let Some(step) = op.next_step() {
            let next = match step {
                Step::Psp => self.psp_step(key, op, facts, cfg, &reference, now).await?,
                Step::Erp { index } => self.erp_step(key, op, facts, index, now).await?,
            };
            if let Some(result) = next {
                return Ok(result);
            }
        }
        Ok(StepResult::Finished)
    }

    /// Saves a step's success: go on, or stop with `Lost` when our claim was taken over.
    pub(super) async fn saved(&self, op: &mut Operation) -> Result<Next, AppError> {
        Ok((!self.save(op).await?).then_some(StepResult::Lost))
    }
}
