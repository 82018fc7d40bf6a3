//! The IO orchestration shared by every entry point (`paybridge serve`, the Lambda functions):
//! [`App::poll_cycle`] reads the ERP and plans work, [`App::run_job`] performs one queued job,
//! [`App::accept_webhook`] verifies and stores a PSP event. The engine decides *what*; this
//! module decides *how*, records every step in the ledger before and after it, and never sends
//! a money call twice for one operation: an operation found with an in-flight mark asks the PSP
//! (by our reference) what happened before it sends anything.
//!
//! Time is an argument everywhere (`now`), so tests and the fault simulator drive a simulated
//! clock.

mod erp_step;
mod evaluate;
mod inbound;
mod operation;
mod operator;
mod payment_link;
mod poll;
mod psp_step;
mod psp_view;
mod worker;

use crate::config::{Config, MethodConfig};
use crate::erp::{Erp, ErpError};
use crate::ledger::OrderKey;
use crate::model::ErpOrder;
use crate::notify::Notifier;
use crate::psp::Psp;
use crate::queue::{Job, Queue, QueueError};
use crate::store::repo::{HistoryEntry, Repo};
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
pub use inbound::over_budget_count;
pub use payment_link::{Resend, link_reference};

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
    /// Orders evaluated again because their recheck time came (pending deadline,
    /// authorization hint or expiry).
    pub swept_rechecks: usize,
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
        let s = &self.settings;
        doubled(s.base_backoff, attempts.saturating_sub(1), s.max_backoff)
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

/// `base` doubled `times` times, at most `max`: the one back-off rule (operation retries, the
/// sweep's looks at an unapplied event).
pub(crate) fn doubled(base: Duration, times: u32, max: Duration) -> Duration {
    let factor = 1i32.checked_shl(times.min(16)).unwrap_or(i32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}
