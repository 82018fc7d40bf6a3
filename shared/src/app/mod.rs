//! The IO orchestration shared by every entry point (`paybridge serve`, the Lambda functions):
//! [`App::poll_cycle`] reads the ERP and plans work, [`App::run_job`] performs one queued job,
//! [`App::accept_webhook`] verifies and stores a PSP event. The engine decides *what*; this
//! module decides *how*, records every step in the ledger before and after it, and never sends
//! a money call twice for one operation: an operation found with an in-flight mark asks the PSP
//! (by our reference) what happened before it sends anything.
//!
//! Time is an argument everywhere (`now`), so tests and the fault simulator drive a simulated
//! clock.

use crate::config::{Config, MethodConfig};
use crate::engine::{self, Flag, Input};
use crate::erp::{Erp, ErpError};
use crate::ledger::{self, Operation, OrderKey, Step, TransitionError};
use crate::model::ErpOrder;
use crate::notify::{Notifier, Problem};
use crate::psp::{Psp, PspOutcome};
use crate::queue::{Delivery, Job, Queue, QueueError};
use crate::store::repo::{EventRecord, HistoryEntry, OrderRecord, Repo};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Erp(#[from] ErpError),
    #[error("no ERP connection {0:?}")]
    UnknownConnection(String),
}

pub use crate::psp::webhook::{MAX_WEBHOOK_BYTES, WebhookError};

/// Tunables of the orchestration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a claimed operation is ours before another worker may take over.
    pub op_lease: Duration,
    /// Poller lease per ERP connection.
    pub poll_lease: Duration,
    /// Attempts before an operation is handed to a human.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Planned operations older than this with no progress are re-enqueued by the sweep.
    pub sweep_grace: Duration,
    /// Orders read from the ERP per batch call.
    pub batch: usize,
    /// When the PSP cannot be read during an evaluation, the order is evaluated again this much
    /// later (a job on the queue), so no poll or webhook has to come along to finish it.
    pub psp_recheck: Duration,
    /// How long after sending a PSP call whose outcome is unknown (timeout, 5xx) it may still
    /// take effect at the PSP. A call not found by its reference is sent again only after this
    /// window: a request the PSP was still processing must not become a second movement.
    pub psp_settle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // Longer than the slowest step: a refund spread over several charges makes several
            // PSP requests, each with its own timeout.
            op_lease: Duration::minutes(5),
            poll_lease: Duration::seconds(300),
            max_attempts: 12,
            base_backoff: Duration::seconds(10),
            max_backoff: Duration::hours(1),
            sweep_grace: Duration::seconds(120),
            batch: 50,
            psp_recheck: Duration::seconds(60),
            psp_settle: Duration::minutes(10),
        }
    }
}

/// What happened to a job; the caller acks or delays the message accordingly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    RetryAt(DateTime<Utc>),
}

/// Summary of one poll cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub orders_seen: usize,
    pub ops_planned: usize,
    /// Connections skipped because of quiet hours.
    pub held_quiet_hours: usize,
    /// Connections skipped because another poller holds the lease.
    pub held_lease: usize,
    pub swept_ops: usize,
    pub swept_events: usize,
}

/// Answer to an accepted webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAck {
    pub duplicate: bool,
}

/// The orchestrator. Clients are built once and shared.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub erps: HashMap<String, Arc<dyn Erp>>,
    pub psp: Arc<dyn Psp>,
    pub notifier: Arc<dyn Notifier>,
    pub settings: Settings,
    /// Identity of this process for leases.
    pub holder: String,
}

impl App {
    fn repo(&self) -> Repo<'_> {
        Repo::new(self.store.as_ref())
    }

    fn tenant(&self) -> &str {
        &self.config.tenant.id
    }

    /// If `now` is inside the tenant's quiet hours, the instant they end.
    pub fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let q = self.config.tenant.quiet_hours?;
        let tz = self.config.tenant.timezone;
        let local = now.with_timezone(&tz);
        if !q.contains(local.time()) {
            return None;
        }
        let mut day = local.date_naive();
        if q.start > q.end && local.time() >= q.start {
            day = day.succ_opt()?;
        }
        let end_local = day.and_time(q.end);
        // A DST gap at the end time: take the earliest valid instant after it.
        let end = tz.from_local_datetime(&end_local).earliest().or_else(|| {
            tz.from_local_datetime(&(end_local + Duration::hours(1)))
                .earliest()
        })?;
        Some(end.with_timezone(&Utc))
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1i32
            .checked_shl(attempts.saturating_sub(1).min(16))
            .unwrap_or(i32::MAX);
        (self.settings.base_backoff * factor).min(self.settings.max_backoff)
    }

    fn method_for(&self, key: &OrderKey, facts: &ErpOrder) -> Option<&MethodConfig> {
        self.config
            .method_for(&key.conn, &facts.mandant, &facts.payment_method)
    }

    async fn enqueue(&self, job: Job, now: DateTime<Utc>) -> Result<(), AppError> {
        self.queue
            .send(&job, std::time::Duration::ZERO, now.timestamp_millis())
            .await?;
        Ok(())
    }

    async fn history(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
        op_id: Option<&str>,
        what: String,
        reference: Option<String>,
    ) -> Result<(), AppError> {
        let entry = HistoryEntry {
            at: now,
            op_id: op_id.map(str::to_string),
            what,
            reference,
        };
        self.repo().add_history(key, &entry, now).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ poll

    /// Reads every active ERP connection (outside quiet hours, under a lease), evaluates the
    /// orders that changed, then sweeps operations and events that lost their job.
    pub async fn poll_cycle(&self, now: DateTime<Utc>) -> Result<PollReport, AppError> {
        let mut report = PollReport::default();
        let tenant = self.tenant().to_string();
        for conn in self.config.erp.iter().filter(|c| c.active) {
            if self.quiet_until(now).is_some() {
                report.held_quiet_hours += 1;
                continue;
            }
            let erp = self
                .erps
                .get(&conn.id)
                .ok_or_else(|| AppError::UnknownConnection(conn.id.clone()))?;
            if !self
                .repo()
                .acquire_lease(
                    &tenant,
                    &conn.id,
                    &self.holder,
                    now,
                    self.settings.poll_lease,
                )
                .await?
            {
                report.held_lease += 1;
                continue;
            }
            let result = self
                .poll_connection(&conn.id, erp.as_ref(), now, &mut report)
                .await;
            self.repo()
                .release_lease(&tenant, &conn.id, &self.holder, now)
                .await?;
            result?;
        }
        self.sweep(now, &mut report).await?;
        Ok(report)
    }

    async fn poll_connection(
        &self,
        conn: &str,
        erp: &dyn Erp,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), AppError> {
        let tenant = self.tenant().to_string();
        let wm = self.repo().watermark(&tenant, conn, "changes", now).await?;
        let changes = erp.changes(wm.as_ref().map(|(v, _)| v.as_str())).await?;
        for chunk in changes.order_ids.chunks(self.settings.batch.max(1)) {
            for facts in erp.orders(chunk).await? {
                let key = OrderKey::new(&tenant, conn, &facts.order_id);
                report.orders_seen += 1;
                report.ops_planned += self.evaluate(&key, Some(facts), now).await?;
            }
        }
        // Only now is the work durably planned: advance the watermark.
        if wm.as_ref().map(|(v, _)| v) != Some(&changes.watermark) {
            self.repo()
                .set_watermark(
                    &tenant,
                    conn,
                    "changes",
                    &changes.watermark,
                    wm.map_or(0, |(_, v)| v),
                    now,
                )
                .await?;
        }
        Ok(())
    }

    async fn sweep(&self, now: DateTime<Utc>, report: &mut PollReport) -> Result<(), AppError> {
        if self.quiet_until(now).is_some() {
            // Jobs waiting for the end of quiet hours look stalled; the first poll after picks
            // up whatever really lost its job.
            return Ok(());
        }
        let tenant = self.tenant().to_string();
        for (key, op_id) in self
            .repo()
            .due_ops(&tenant, now - self.settings.sweep_grace, 500)
            .await?
        {
            self.enqueue(
                Job::RunOp {
                    order_pk: key.pk(),
                    op_id,
                },
                now,
            )
            .await?;
            report.swept_ops += 1;
        }
        for ev in self.repo().unapplied_events(&tenant, 500, now).await? {
            if self
                .repo()
                .order_for_payment(&tenant, &ev.payment_id, now)
                .await?
                .is_some()
            {
                self.enqueue(Job::ApplyEvent { event_pk: ev.pk() }, now)
                    .await?;
                report.swept_events += 1;
            }
        }
        Ok(())
    }

    /// Evaluates one order: new facts (from a poll) or the stored ones (after a webhook or a
    /// finished operation), a fresh PSP view, the ledger; inserts and enqueues new operations,
    /// records flags and notifies new errors. Returns the number of operations planned.
    pub async fn evaluate(
        &self,
        key: &OrderKey,
        new_facts: Option<ErpOrder>,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let repo = self.repo();
        for _ in 0..5 {
            let mut rec = repo
                .order(key, now)
                .await?
                .unwrap_or_else(|| OrderRecord::new(key.clone(), now));
            if let Some(f) = &new_facts {
                rec.facts = Some(f.clone());
            }
            let Some(facts) = rec.facts.clone() else {
                return Ok(0);
            };
            let Some(cfg) = self.method_for(key, &facts) else {
                return Ok(0); // not a payment method paybridge handles
            };
            let pid = facts.psp_payment_id.clone().filter(|p| !p.is_empty());
            // PSP events waiting for this payment, read before the PSP view: the view reflects
            // them. One that arrives again later changes its version and stays unapplied.
            let mut events = Vec::new();
            if let Some(pid) = &pid {
                repo.link_payment(&key.tenant, pid, key, now).await?;
                events = repo.unapplied_events(&key.tenant, 500, now).await?;
                events.retain(|ev| &ev.payment_id == pid);
            }
            let psp_view = match &pid {
                None => None,
                Some(pid) => match self.psp.fetch(cfg, pid).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        // Decide what can be decided without it, and come back: nothing else
                        // may evaluate this order again (the ERP lists changes only).
                        tracing::warn!(order = %key, error = %e, "PSP fetch failed, evaluating again later");
                        None
                    }
                },
            };
            let ops = repo.ops(key, now).await?;
            let decision = engine::decide(&Input {
                key,
                order: &facts,
                psp: psp_view.as_ref(),
                ledger: &ops,
                config: Some(cfg),
                now,
            });
            let mut planned = 0;
            for plan in decision.plans {
                let op = Operation::new(key, plan, now);
                if repo.insert_op(&op, now).await? {
                    planned += 1;
                    self.history(
                        key,
                        now,
                        Some(&op.id),
                        format!("planned {:?}", op.plan.purpose),
                        None,
                    )
                    .await?;
                    self.enqueue(
                        Job::RunOp {
                            order_pk: key.pk(),
                            op_id: op.id.clone(),
                        },
                        now,
                    )
                    .await?;
                }
            }
            for note in decision.notes {
                self.history(key, now, None, note, None).await?;
            }
            rec.flags = decision.flags;
            rec.solved
                .retain(|c| rec.flags.iter().any(|f| &f.code == c));
            // An error that went away (or was marked solved) is told again when it comes back.
            let open: Vec<String> = rec.open_errors().map(|f| f.code.clone()).collect();
            rec.notified.retain(|c| open.contains(c));
            rec.updated_at = now;
            match repo.save_order(&rec, now).await {
                Ok(v) => rec.version = v,
                Err(e) if e.is_conflict() => continue, // someone else saved: evaluate again
                Err(e) => return Err(e.into()),
            }
            self.notify_new_errors(&mut rec, now).await?;
            if pid.is_some() && psp_view.is_none() {
                let delay = self.settings.psp_recheck.to_std().unwrap_or_default();
                self.queue
                    .send(
                        &Job::Evaluate { order_pk: key.pk() },
                        delay,
                        now.timestamp_millis(),
                    )
                    .await?;
            }
            // The PSP events read before the fresh view are reflected in it: mark them.
            if psp_view.is_some() {
                for ev in events {
                    match repo.mark_event_applied(&ev, now).await {
                        Ok(()) => {
                            self.history(
                                key,
                                now,
                                None,
                                format!("PSP event {} applied", ev.event),
                                None,
                            )
                            .await?
                        }
                        // It came again after it was read: evaluate once more for it.
                        Err(e) if e.is_conflict() => {
                            self.enqueue(Job::ApplyEvent { event_pk: ev.pk() }, now)
                                .await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            return Ok(planned);
        }
        Err(StoreError::Conflict {
            pk: key.pk(),
            sk: "ORDER".into(),
        }
        .into())
    }

    /// Tells the operator about open errors not told yet, then remembers them as told. The
    /// flags are saved first and the "told" mark after the e-mail: a crash in between sends the
    /// e-mail twice rather than never; a failed e-mail is tried again at the next evaluation.
    async fn notify_new_errors(
        &self,
        rec: &mut OrderRecord,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let key = rec.key.clone();
        let pending: Vec<Flag> = rec
            .open_errors()
            .filter(|f| !rec.notified.contains(&f.code))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        for f in pending {
            self.history(
                &key,
                now,
                None,
                format!("error {}: {}", f.code, f.message),
                None,
            )
            .await?;
            let problem = Problem {
                tenant: key.tenant.clone(),
                order_id: key.order_id.clone(),
                code: f.code.clone(),
                message: f.message.clone(),
                action: engine::problems::action_for(&f.code).to_string(),
            };
            match self.notifier.notify(&problem).await {
                Ok(()) => rec.notified.push(f.code),
                Err(e) => tracing::warn!(order = %key, error = %e, "notification failed"),
            }
        }
        match self.repo().save_order(rec, now).await {
            Ok(v) => rec.version = v,
            // Someone else saved meanwhile: whoever evaluates next tells what is still untold.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    // ------------------------------------------------------------------ jobs

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
            Job::ApplyEvent { event_pk } => self.apply_event(event_pk, now).await,
        }
    }

    async fn apply_event(
        &self,
        event_pk: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        let repo = self.repo();
        let Some(ev) = repo.event(event_pk, now).await? else {
            return Ok(JobOutcome::Done);
        };
        if ev.applied {
            return Ok(JobOutcome::Done);
        }
        match repo
            .order_for_payment(&ev.tenant, &ev.payment_id, now)
            .await?
        {
            // Early event: the order is not imported yet. It stays stored and is applied when
            // the order appears (evaluate marks it).
            None => Ok(JobOutcome::Done),
            Some(key) => {
                self.evaluate(&key, None, now).await?;
                Ok(JobOutcome::Done)
            }
        }
    }

    async fn save(&self, op: &mut Operation) -> Result<bool, AppError> {
        match self.repo().save_op(op).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs (or resumes, or reconciles) one operation.
    async fn run_op(
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
        let facts = repo.order(key, now).await?.and_then(|r| r.facts);
        let Some(facts) = facts else {
            return Ok(JobOutcome::Done);
        };
        let Some(cfg) = self.method_for(key, &facts).cloned() else {
            op.fail("the payment-method config is gone or inactive".into(), now);
            if self.save(&mut op).await? {
                self.follow_up(key, &mut op, now).await?;
            }
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
        // With a call in flight the steps reconcile first and give up only where they would
        // send again: never while the outcome of a call is unknown.
        if op.inflight.is_none()
            && let Some(why) = self.out_of_attempts(&op)
        {
            op.fail(why, now);
            if self.save(&mut op).await? {
                self.follow_up(key, &mut op, now).await?;
            }
            return Ok(JobOutcome::Done);
        }
        if !self.save(&mut op).await? {
            return Ok(JobOutcome::RetryAt(now + Duration::seconds(1)));
        }
        let result = self.steps(key, &mut op, &facts, &cfg, now).await;
        match result {
            Ok(StepResult::Finished) => {
                op.finish(now)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                if self.save(&mut op).await? {
                    self.history(
                        key,
                        now,
                        Some(&op.id),
                        format!("done {:?}", op.plan.purpose),
                        op.psp_tx.clone(),
                    )
                    .await?;
                    // Follow-ups (release after capture, lock cleared after receipt, …).
                    self.follow_up(key, &mut op, now).await?;
                }
                Ok(JobOutcome::Done)
            }
            Ok(StepResult::Lost) => Ok(JobOutcome::RetryAt(now + Duration::seconds(1))),
            Ok(StepResult::Retry(why)) => {
                let at = now + self.backoff(op.attempts);
                self.retry_op(key, &mut op, at, why, now).await
            }
            Ok(StepResult::RetryAt(at, why)) => self.retry_op(key, &mut op, at, why, now).await,
            Ok(StepResult::Failed(why)) => {
                op.fail(why.clone(), now);
                if self.save(&mut op).await? {
                    self.history(key, now, Some(&op.id), format!("failed: {why}"), None)
                        .await?;
                    self.follow_up(key, &mut op, now).await?;
                }
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
    fn out_of_attempts(&self, op: &Operation) -> Option<String> {
        (op.attempts > self.settings.max_attempts).then(|| {
            format!(
                "gave up after {} attempts: {}",
                op.attempts - 1,
                op.last_error.clone().unwrap_or_default()
            )
        })
    }

    /// Evaluates the order after one of its operations finished, then clears the operation's
    /// follow-up mark (kept until now so that the sweep repeats this if the process dies).
    async fn follow_up(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        self.evaluate(key, None, now).await?;
        if op.follow_up {
            op.follow_up = false;
            self.save(op).await?; // a conflict: someone else followed up or will
        }
        Ok(())
    }

    /// Puts the operation aside until `at`.
    async fn retry_op(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        at: DateTime<Utc>,
        why: String,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, AppError> {
        op.retry_at(at, why.clone(), now);
        if self.save(op).await? {
            self.history(
                key,
                now,
                Some(&op.id),
                format!("retry at {at}: {why}"),
                None,
            )
            .await?;
        }
        Ok(JobOutcome::RetryAt(at))
    }

    async fn steps(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        facts: &ErpOrder,
        cfg: &MethodConfig,
        now: DateTime<Utc>,
    ) -> Result<StepResult, AppError> {
        let reference = ledger::psp_reference(&op.id);
        while let Some(step) = op.next_step() {
            match step {
                Step::Psp => {
                    let call = op.plan.psp.clone().expect("next_step says psp");
                    let Some(pid) = facts.psp_payment_id.as_deref() else {
                        return Ok(StepResult::Failed("the order has no PSP payment id".into()));
                    };
                    let payment = match self.psp.fetch(cfg, pid).await {
                        Ok(p) => p,
                        Err(e) => return Ok(StepResult::Retry(format!("PSP fetch: {e}"))),
                    };
                    // A call may have been sent before (in-flight mark): reconcile first — has
                    // the PSP got a transaction with our reference? Only then send.
                    let found = if op.inflight == Some(Step::Psp) {
                        match self
                            .psp
                            .find_transaction(cfg, &payment, &call, &reference)
                            .await
                        {
                            Ok(f) => f,
                            Err(e) => {
                                return Ok(StepResult::Retry(format!("PSP reconciliation: {e}")));
                            }
                        }
                    } else {
                        None
                    };
                    if found.is_none()
                        && op.inflight == Some(Step::Psp)
                        && let Some(since) = op.inflight_since
                        && now < since + self.settings.psp_settle
                    {
                        return Ok(StepResult::RetryAt(
                            since + self.settings.psp_settle,
                            "PSP outcome unknown: not found yet, looking again before re-sending"
                                .into(),
                        ));
                    }
                    if let Some(tx) = found {
                        match tx.status {
                            crate::model::TxStatus::Success => {
                                let tx_id = tx.id.clone();
                                op.psp_succeeded(tx_id.clone(), now)
                                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                                if !self.save(op).await? {
                                    return Ok(StepResult::Lost);
                                }
                                self.history(
                                    key,
                                    now,
                                    Some(&op.id),
                                    "PSP call found done on reconciliation".into(),
                                    Some(tx_id),
                                )
                                .await?;
                                continue;
                            }
                            crate::model::TxStatus::Pending => {
                                return Ok(StepResult::Retry(
                                    "PSP transaction still pending".into(),
                                ));
                            }
                            crate::model::TxStatus::Error => {
                                return Ok(StepResult::Failed(format!(
                                    "the PSP refused transaction {}",
                                    tx.id
                                )));
                            }
                        }
                    }
                    let pos = match payment.position() {
                        Ok(p) => p,
                        Err(e) => {
                            return Ok(StepResult::Failed(format!(
                                "PSP amounts inconsistent: {e}"
                            )));
                        }
                    };
                    // A refund resumed after an unknown outcome may have been sent in parts
                    // (a connector may spread a refund over several charges under one reference) that
                    // the position already counts: bound it by the charged total instead; the
                    // connector sends only the remainder.
                    let resumed_refund = op.inflight == Some(Step::Psp)
                        && matches!(call, ledger::PspCall::Refund { .. });
                    let pos = if resumed_refund {
                        crate::model::Position {
                            refunded: crate::money::Money::zero(pos.refunded.currency()),
                            ..pos
                        }
                    } else {
                        pos
                    };
                    if let Err(v) = ledger::check_call(&call, &pos, cfg.rounding_tolerance) {
                        return Ok(StepResult::Failed(format!("money invariant: {v}")));
                    }
                    // Not found at the PSP after its settle time: the call did not happen.
                    if let Some(why) = self.out_of_attempts(op) {
                        op.inflight = None;
                        return Ok(StepResult::Failed(why));
                    }
                    op.begin(Step::Psp, now)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    if !self.save(op).await? {
                        return Ok(StepResult::Lost);
                    }
                    match self.psp.execute(cfg, &payment, &call, &reference).await {
                        PspOutcome::Done { tx_id } => {
                            op.psp_succeeded(tx_id.clone(), now)
                                .map_err(|e| StoreError::Backend(e.to_string()))?;
                            if !self.save(op).await? {
                                return Ok(StepResult::Lost);
                            }
                            self.history(
                                key,
                                now,
                                Some(&op.id),
                                format!("PSP {call:?} done"),
                                Some(tx_id),
                            )
                            .await?;
                        }
                        PspOutcome::Pending { .. } => {
                            return Ok(StepResult::Retry("PSP transaction pending".into()));
                        }
                        PspOutcome::Unknown { message } => {
                            return Ok(StepResult::Retry(format!(
                                "PSP outcome unknown: {message}"
                            )));
                        }
                        PspOutcome::Retryable { message } => {
                            op.inflight = None;
                            return Ok(StepResult::Retry(format!("PSP unavailable: {message}")));
                        }
                        PspOutcome::Declined { code, message } => {
                            op.inflight = None;
                            return Ok(StepResult::Failed(format!(
                                "PSP declined ({code}): {message}"
                            )));
                        }
                    }
                }
                Step::Erp { index } => {
                    if self.quiet_until(now).is_some() {
                        return Ok(StepResult::Retry("ERP quiet hours".into()));
                    }
                    let erp = self
                        .erps
                        .get(&key.conn)
                        .ok_or_else(|| AppError::UnknownConnection(key.conn.clone()))?;
                    let write = op.plan.erp[index].clone();
                    if op.inflight == Some(step) {
                        match erp.was_applied(&key.order_id, &write, &op.id).await {
                            Ok(Some(true)) => {
                                op.erp_succeeded(now)
                                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                                if !self.save(op).await? {
                                    return Ok(StepResult::Lost);
                                }
                                continue;
                            }
                            Ok(Some(false)) => {}
                            Ok(None) => {
                                return Ok(StepResult::Failed(format!(
                                    "ERP write {index} may have been applied and cannot be read back: check by hand"
                                )));
                            }
                            Err(e) => return Ok(StepResult::Retry(format!("ERP read-back: {e}"))),
                        }
                    }
                    // Read back as not applied (or never sent): the write did not happen.
                    if let Some(why) = self.out_of_attempts(op) {
                        op.inflight = None;
                        return Ok(StepResult::Failed(why));
                    }
                    op.begin(step, now)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    if !self.save(op).await? {
                        return Ok(StepResult::Lost);
                    }
                    match erp.apply(&key.order_id, &write, &op.id).await {
                        Ok(()) => {
                            op.erp_succeeded(now)
                                .map_err(|e| StoreError::Backend(e.to_string()))?;
                            if !self.save(op).await? {
                                return Ok(StepResult::Lost);
                            }
                        }
                        Err(ErpError::Unavailable(m)) => {
                            op.inflight = None;
                            return Ok(StepResult::Retry(format!("ERP unavailable: {m}")));
                        }
                        Err(ErpError::Unknown(m)) => {
                            return Ok(StepResult::Retry(format!("ERP outcome unknown: {m}")));
                        }
                        // A reply that cannot be read (a proxy's HTML page, a cut-off body) says
                        // nothing about the write: keep the in-flight mark, so the next attempt
                        // reads back before it writes again.
                        Err(ErpError::BadReply(m)) => {
                            return Ok(StepResult::Retry(format!(
                                "ERP reply invalid, outcome unknown: {m}"
                            )));
                        }
                        Err(e @ ErpError::Refused(_)) => {
                            op.inflight = None;
                            return Ok(StepResult::Failed(e.to_string()));
                        }
                    }
                }
            }
        }
        Ok(StepResult::Finished)
    }

    // ------------------------------------------------------------------ webhook

    /// Verifies a webhook with the connector of `psp` (the route's `{psp}`) and stores its
    /// event before it is acknowledged. The body is never trusted beyond naming the payment:
    /// the worker re-reads it from the configured host with the account's credentials.
    pub async fn accept_webhook(
        &self,
        psp: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<WebhookAck, WebhookError> {
        let hook = crate::psp::webhook(psp).ok_or_else(|| WebhookError::UnknownPsp(psp.into()))?;
        if body.len() > hook.max_body().min(MAX_WEBHOOK_BYTES) {
            return Err(WebhookError::TooLarge(body.len()));
        }
        let event = hook.verify(&self.config, body)?;
        let ev = EventRecord {
            psp: psp.to_string(),
            identity: event.identity,
            tenant: self.tenant().to_string(),
            event: event.event,
            payment_id: event.payment_id,
            public_key: event.account,
            received_at: now,
            applied: false,
            version: 0,
        };
        let repo = self.repo();
        let inserted = repo
            .insert_event(&ev, now)
            .await
            .map_err(|_| WebhookError::Unavailable)?;
        if !inserted {
            // The same body again: a PSP may send identical bodies for distinct happenings (a
            // second partial transfer), so it is a signal to look again, not only a replay.
            // Still-unapplied signals coalesce; a consumed one is re-armed and queued once.
            for _ in 0..3 {
                let stored = match repo.event(&ev.pk(), now).await {
                    Ok(Some(stored)) => stored,
                    Ok(None) => return Err(WebhookError::Unavailable), // expired meanwhile
                    Err(_) => return Err(WebhookError::Unavailable),
                };
                match repo.rearm_event(&stored, now).await {
                    Ok(()) => {
                        if stored.applied {
                            self.enqueue_event(&ev.pk(), now).await;
                        }
                        return Ok(WebhookAck { duplicate: true });
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(_) => return Err(WebhookError::Unavailable),
                }
            }
            return Err(WebhookError::Unavailable);
        }
        self.enqueue_event(&ev.pk(), now).await;
        Ok(WebhookAck { duplicate: false })
    }

    /// Queues a stored event's job; if that fails the sweep picks the event up.
    async fn enqueue_event(&self, event_pk: &str, now: DateTime<Utc>) {
        let job = Job::ApplyEvent {
            event_pk: event_pk.to_string(),
        };
        if let Err(e) = self
            .queue
            .send(&job, std::time::Duration::ZERO, now.timestamp_millis())
            .await
        {
            tracing::warn!(error = %e, "event stored but not enqueued; the sweep picks it up");
        }
    }

    /// Operator action "problem solved": clears the error mark, does nothing else.
    pub async fn mark_solved(&self, key: &OrderKey, now: DateTime<Utc>) -> Result<bool, AppError> {
        let repo = self.repo();
        let Some(mut rec) = repo.order(key, now).await? else {
            return Ok(false);
        };
        let codes: Vec<String> = rec.open_errors().map(|f| f.code.clone()).collect();
        rec.solved.extend(codes);
        repo.save_order(&rec, now).await?;
        self.history(key, now, None, "problem marked solved".into(), None)
            .await?;
        Ok(true)
    }

    /// Orders with open errors (dashboard / error page).
    pub async fn problem_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderRecord>, AppError> {
        Ok(self.repo().problem_orders(self.tenant(), 500, now).await?)
    }
}

enum StepResult {
    Finished,
    Retry(String),
    /// Try again at this instant (not on the backoff schedule).
    RetryAt(DateTime<Utc>, String),
    Failed(String),
    /// Our claim was taken over (version moved): stop without writing.
    Lost,
}

#[cfg(test)]
mod tests;
