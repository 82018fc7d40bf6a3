//! The worker: queued jobs received, run and settled (ack or redelivery later); one operation
//! claimed under a lease, its steps run (see [`super::psp_step`] and [`super::erp_step`]) and
//! its end recorded, with the follow-up evaluation that plans what comes next.

use super::{App, AppError, JobOutcome, StepResult};
use crate::ledger::{Operation, OrderKey, Purpose, TransitionError};
use crate::queue::{Delivery, Job, QueueError};
use crate::store::StoreError;
use crate::store::repo::HistoryEntry;
use chrono::{DateTime, Duration, Utc};

impl App {
    /// Receives up to `max` jobs, runs them, acks or delays each. Returns how many ran.
    pub async fn work_once(&self, max: usize, now: DateTime<Utc>) -> Result<usize, AppError> {
        let visibility =
            std::time::Duration::from_secs(self.settings.op_lease.num_seconds().max(1) as u64 * 2);
        let deliveries = self
            .queue
            .receive(max, visibility, now.timestamp_millis())
            .await?;
        let n = deliveries.len();
        for d in deliveries {
            self.handle_delivery(&d, now).await?;
        }
        Ok(n)
    }

    /// Runs one delivery and settles the message (ack, or make visible again later).
    pub async fn handle_delivery(
        &self,
        d: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        let outcome = match self.run_job(&d.job, now).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(job = ?d.job, error = %e, "job failed, will retry");
                JobOutcome::RetryAt(now + self.backoff(d.receive_count))
            }
        };
        let settled = match &outcome {
            JobOutcome::Done => self.queue.ack(&d.receipt).await,
            JobOutcome::RetryAt(at) => {
                let delay = (*at - now).to_std().unwrap_or_default();
                self.queue
                    .retry_later(&d.receipt, delay, now.timestamp_millis())
                    .await
            }
        };
        match settled {
            // Our visibility ran out and the message went to another worker: it is theirs now,
            // and every job is idempotent.
            Err(QueueError::StaleReceipt) => {
                tracing::info!(job = ?d.job, "receipt outdated: the message was redelivered");
            }
            other => other?,
        }
        Ok(outcome)
    }

    /// Performs one job.
    pub async fn run_job(&self, job: &Job, now: DateTime<Utc>) -> Result<JobOutcome, AppError> {
        match job {
            Job::RunOp { order_pk, op_id } => {
                let Some(key) = OrderKey::from_pk(order_pk) else {
                    return Ok(JobOutcome::Done); // not ours: drop
                };
                self.run_op(&key, op_id, now).await
            }
            Job::Evaluate { order_pk } => {
                if let Some(key) = OrderKey::from_pk(order_pk) {
                    self.evaluate(&key, None, now).await?;
                }
                Ok(JobOutcome::Done)
            }
            Job::ApplyEvent { event_pk, event_sk } => {
                self.apply_event(event_pk, event_sk, now).await
            }
        }
    }

    pub(super) async fn apply_event(
        &self,
        event_pk: &str,
        event_sk: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        let repo = self.repo();
        let Some(ev) = repo.event(event_pk, event_sk, now).await? else {
            return Ok(JobOutcome::Done);
        };
        if ev.applied {
            return Ok(JobOutcome::Done);
        }
        match repo
            .order_for_payment(&ev.tenant, &ev.payment_id, now)
            .await?
        {
            Some(key) => {
                self.evaluate(&key, None, now).await?;
                Ok(JobOutcome::Done)
            }
            // A payment made on paybridge's payment link: its reference names the order.
            None if let Some(key) = self.link_order(ev.reference.as_deref(), now).await? => {
                self.adopt_link_payment(&key, &ev.payment_id, now).await?;
                self.evaluate(&key, None, now).await?;
                Ok(JobOutcome::Done)
            }
            // Early event: the order is not imported yet. It stays stored and is applied when
            // the order appears (evaluate marks it).
            None => Ok(JobOutcome::Done),
        }
    }

    /// Saves the operation with the history lines of its transitions since the last save, in
    /// one commit; `false` when our claim was taken over (the version moved on).
    pub(super) async fn save(
        &self,
        op: &mut Operation,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let entries: Vec<HistoryEntry> = op
            .unsaved_history
            .iter()
            .map(|t| HistoryEntry {
                at: t.at,
                op_id: Some(op.id.clone()),
                what: t.what.clone(),
                reference: t.reference.clone(),
            })
            .collect();
        match self.repo().save_op_with_history(op, &entries, now).await {
            Ok(()) => {
                op.unsaved = false;
                op.unsaved_history.clear();
                Ok(true)
            }
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs (or resumes, or reconciles) one operation.
    pub(super) async fn run_op(
        &self,
        key: &OrderKey,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        let repo = self.repo();
        let Some(mut op) = repo.op(key, op_id, now).await? else {
            return Ok(JobOutcome::Done);
        };
        if op.status.is_terminal() {
            // The job that finished it may have died before its follow-up evaluation (release
            // after capture, error flag after failure): evaluating again is idempotent.
            self.follow_up(key, &mut op, now).await?;
            return Ok(JobOutcome::Done);
        }
        if let Some(until) = self.quiet_until(now)
            && op.erp_done < op.plan.erp.len()
        {
            return Ok(JobOutcome::RetryAt(until));
        }
        let rec = repo.order(key, now).await?;
        let Some((rec, facts)) = rec.and_then(|r| r.facts.clone().map(|f| (r, f))) else {
            return Ok(JobOutcome::Done);
        };
        let Some(cfg) = self.method_for(key, &facts).cloned() else {
            op.fail("the payment-method config is gone or inactive".into(), now);
            self.follow_up(key, &mut op, now).await?;
            return Ok(JobOutcome::Done);
        };
        match op.claim(now, self.settings.op_lease) {
            Ok(()) => {}
            Err(TransitionError::Finished(_)) => return Ok(JobOutcome::Done),
            Err(TransitionError::Leased(_, until)) | Err(TransitionError::NotDue(_, until)) => {
                return Ok(JobOutcome::RetryAt(until));
            }
            Err(e) => {
                tracing::error!(op = %op.id, error = %e, "cannot claim");
                return Ok(JobOutcome::Done);
            }
        }
        // Hands-off: what has not started never will (the engine may plan it again once the
        // order is back); what has started finishes. The switch comments themselves run.
        if rec.hands_off_since.is_some()
            && !matches!(op.plan.purpose, Purpose::HandsOff | Purpose::HandsOn)
            && op.cancel("the order is out of automation (hands-off)", now)
        {
            self.save(&mut op, now).await?;
            return Ok(JobOutcome::Done);
        }
        // With a call in flight the steps reconcile first and give up only where they would
        // send again: never while the outcome of a call is unknown.
        if op.inflight.is_none()
            && let Some(why) = self.out_of_attempts(&op)
        {
            op.fail(why, now);
            self.follow_up(key, &mut op, now).await?;
            return Ok(JobOutcome::Done);
        }
        // The claim is saved with the first step's in-flight mark, or before the first request
        // that leaves the process, or with the operation's end (see `durable`).
        op.unsaved = true;
        let result = self.steps(key, &mut op, &rec, &cfg, now).await;
        self.settle_op(key, &mut op, result, now).await
    }

    /// Records how the operation's steps ended and what the job does next.
    async fn settle_op(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        result: Result<StepResult, AppError>,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        match result {
            Ok(StepResult::Finished) => {
                op.finish(now)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let what = format!("done {:?}", op.plan.purpose);
                op.record(now, what, op.psp_tx.clone());
                // Saved with the follow-up (release after capture, lock cleared after
                // receipt, …).
                self.follow_up(key, op, now).await?;
                Ok(JobOutcome::Done)
            }
            Ok(StepResult::Lost) => Ok(JobOutcome::RetryAt(now + Duration::seconds(1))),
            Ok(StepResult::Retry(why)) => {
                let at = now + self.backoff(op.attempts);
                self.retry_op(op, at, why, now).await
            }
            Ok(StepResult::RetryAt(at, why)) => self.retry_op(op, at, why, now).await,
            Ok(StepResult::Failed(why)) => {
                op.fail(why.clone(), now);
                op.record(now, format!("failed: {why}"), None);
                self.follow_up(key, op, now).await?;
                Ok(JobOutcome::Done)
            }
            Err(e) => {
                // Store trouble mid-way: the in-flight mark (if persisted) makes the next attempt
                // reconcile; the lease expiry lets it take over.
                tracing::warn!(op = %op.id, error = %e, "operation interrupted");
                Ok(JobOutcome::RetryAt(now + self.settings.op_lease))
            }
        }
    }

    /// Why the operation gives up instead of sending again, once its attempts are used up.
    pub(super) fn out_of_attempts(&self, op: &Operation) -> Option<String> {
        (op.attempts > self.settings.max_attempts).then(|| {
            format!(
                "gave up after {} attempts: {}",
                op.attempts - 1,
                op.last_error.clone().unwrap_or_default()
            )
        })
    }

    /// Evaluates the order after one of its operations ended. An end not saved yet (or not
    /// followed up yet: its mark is kept until now so that the sweep repeats this if the
    /// process dies) is saved in the evaluation's commit, the follow-up mark cleared.
    pub(super) async fn follow_up(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        if op.follow_up || op.unsaved {
            // `false`: our claim was taken over; whoever holds it now follows up.
            self.evaluate_after(key, op, now).await?;
        } else {
            self.evaluate(key, None, now).await?;
        }
        Ok(())
    }

    /// Puts the operation aside until `at`.
    pub(super) async fn retry_op(
        &self,
        op: &mut Operation,
        at: DateTime<Utc>,
        why: String,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        op.retry_at(at, why.clone(), now);
        op.record(now, format!("retry at {at}: {why}"), None);
        self.save(op, now).await?;
        Ok(JobOutcome::RetryAt(at))
    }
}
