//! The PSP call of an operation. A call that may have been sent before (in-flight mark) is
//! first looked for at the PSP by our reference; it is sent again only when the PSP has no
//! transaction for it after the settle time, and only within the money invariants of the
//! PSP position. A call that cannot have been sent is checked and sent on the view that decided
//! it (see [`super::psp_view`]); one that may have been sent reads the PSP fresh. A capture is
//! not sent once the authorization has expired (it may have been planned in time).

use super::operation::Next;
use super::{App, AppError, StepResult};
use crate::config::MethodConfig;
use crate::ledger::{self, Operation, OrderKey, PspCall, Step};
use crate::model::{Position, PspPayment, TxStatus};
use crate::money::Money;
use crate::psp::PspOutcome;
use crate::store::StoreError;
use crate::store::repo::OrderRecord;
use chrono::{DateTime, Utc};

impl App {
    /// The operation's PSP call: reconcile if it may have been sent, else check and send.
    pub(super) async fn psp_step(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        rec: &OrderRecord,
        cfg: &MethodConfig,
        reference: &str,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        let call = op.plan.psp.clone().expect("next_step says psp");
        if let PspCall::RequestPayment { amount } = call {
            return self.link_step(key, op, rec, cfg, amount, now).await;
        }
        let pid = rec.payment_id();
        let Some(pid) = pid.filter(|p| !p.is_empty()) else {
            return Ok(Some(StepResult::Failed(
                "the order has no PSP payment id".into(),
            )));
        };
        let payment = match self.stored_view_for_call(key, op, rec, pid, now).await? {
            Some(view) => view,
            None => {
                if let Some(lost) = self.durable(op, now).await? {
                    return Ok(Some(lost));
                }
                match self.psp.fetch(cfg, pid).await {
                    Ok(p) => p,
                    Err(e) => return Ok(Some(StepResult::Retry(format!("PSP fetch: {e}")))),
                }
            }
        };
        if op.inflight == Some(Step::Psp)
            && let Some(next) = self
                .reconcile(op, cfg, &payment, &call, reference, now)
                .await?
        {
            return Ok(next);
        }
        if let Some(why) = self
            .refuse_call(op, cfg, &payment, &call)
            .or_else(|| expired_capture(&call, cfg, &payment, rec, now))
        {
            return Ok(Some(StepResult::Failed(why)));
        }
        // Not found at the PSP after its settle time: the call did not happen.
        if let Some(why) = self.out_of_attempts(op) {
            op.inflight = None;
            return Ok(Some(StepResult::Failed(why)));
        }
        op.begin(Step::Psp, now)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        if !self.save(op, now).await? {
            return Ok(Some(StepResult::Lost));
        }
        let outcome = self.psp.execute(cfg, &payment, &call, reference).await;
        self.record_outcome(op, &call, outcome, now)
    }

    /// The view the call is checked and sent on when it is the stored one that decided it;
    /// `None` when the call may have been sent already or the payment may have moved since
    /// (then the PSP is read fresh).
    async fn stored_view_for_call(
        &self,
        key: &OrderKey,
        op: &Operation,
        rec: &OrderRecord,
        pid: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PspPayment>, AppError> {
        if op.inflight.is_some() || rec.psp.is_none() {
            return Ok(None);
        }
        Ok(self
            .known(key, pid, rec.psp.as_ref(), None, now)
            .await?
            .view)
    }

    /// A call that may have been sent: has the PSP got a transaction with our reference?
    /// `Some(next)` decides the step; `None` means it was not sent, so it may be sent now.
    async fn reconcile(
        &self,
        op: &mut Operation,
        cfg: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Next>, AppError> {
        let found = match self
            .psp
            .find_transaction(cfg, payment, call, reference)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                let why = format!("PSP reconciliation: {e}");
                return Ok(Some(Some(StepResult::Retry(why))));
            }
        };
        let Some(tx) = found else {
            if let Some(since) = op.inflight_since
                && now < since + self.settings.psp_settle
            {
                return Ok(Some(Some(StepResult::RetryAt(
                    since + self.settings.psp_settle,
                    "PSP outcome unknown: not found yet, looking again before re-sending".into(),
                ))));
            }
            return Ok(None);
        };
        let result = match tx.status {
            TxStatus::Success => {
                op.psp_succeeded(tx.id.clone(), now)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                // Saved with the next mark or the end.
                op.record(
                    now,
                    "PSP call found done on reconciliation".into(),
                    Some(tx.id),
                );
                return Ok(Some(None));
            }
            TxStatus::Pending => StepResult::Retry("PSP transaction still pending".into()),
            TxStatus::Error => StepResult::Failed(format!("the PSP refused transaction {}", tx.id)),
        };
        Ok(Some(Some(result)))
    }

    /// Why the call must not be sent against the fresh PSP position, if it must not.
    fn refuse_call(
        &self,
        op: &Operation,
        cfg: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
    ) -> Option<String> {
        let pos = match payment.position() {
            Ok(p) => p,
            Err(e) => return Some(format!("PSP amounts inconsistent: {e}")),
        };
        // A refund resumed after an unknown outcome may have been sent in parts (a connector
        // may spread a refund over several charges under one reference) that the position
        // already counts: bound it by the charged total instead; the connector sends only the
        // remainder.
        let resumed_refund =
            op.inflight == Some(Step::Psp) && matches!(call, PspCall::Refund { .. });
        let pos = if resumed_refund {
            Position {
                refunded: Money::zero(pos.refunded.currency()),
                ..pos
            }
        } else {
            pos
        };
        ledger::check_call(call, &pos, cfg.rounding_tolerance)
            .err()
            .map(|v| format!("money invariant: {v}"))
    }

    /// Records what the PSP answered.
    fn record_outcome(
        &self,
        op: &mut Operation,
        call: &PspCall,
        outcome: PspOutcome,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        let result = match outcome {
            PspOutcome::Done { tx_id } => {
                op.psp_succeeded(tx_id.clone(), now)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                // Saved with the next mark or the end.
                op.record(now, format!("PSP {call:?} done"), Some(tx_id));
                return Ok(None);
            }
            PspOutcome::Pending { .. } => StepResult::Retry("PSP transaction pending".into()),
            PspOutcome::Unknown { message } => {
                StepResult::Retry(format!("PSP outcome unknown: {message}"))
            }
            PspOutcome::Retryable { message } => {
                op.inflight = None;
                StepResult::Retry(format!("PSP unavailable: {message}"))
            }
            PspOutcome::Declined { code, message } => {
                op.inflight = None;
                StepResult::Failed(format!("PSP declined ({code}): {message}"))
            }
        };
        Ok(Some(result))
    }
}

/// A capture that would reach the PSP after its authorization expired (planned in time, sent
/// late: a retry after a PSP outage, a long queue) is not sent: the PSP would refuse it for
/// age. The operation fails with the reason; the next evaluation raises
/// `authorization_expired`.
fn expired_capture(
    call: &PspCall,
    cfg: &MethodConfig,
    payment: &PspPayment,
    rec: &OrderRecord,
    now: DateTime<Utc>,
) -> Option<String> {
    let PspCall::Capture { amount } = call else {
        return None;
    };
    let first_seen = rec.first_seen_at.unwrap_or(now);
    let (at, expires, _) = crate::engine::authorization::span(payment, cfg, first_seen)?;
    (now >= expires).then(|| {
        format!(
            "not sent: the authorization of {} expired on {}, the PSP would refuse the capture of {amount}",
            at.format("%Y-%m-%d"),
            expires.format("%Y-%m-%d")
        )
    })
}
