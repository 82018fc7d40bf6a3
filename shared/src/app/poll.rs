//! Polling: each active ERP connection is read under a lease, outside quiet hours, from its
//! watermark; every changed order is evaluated; then operations and events that lost their job
//! are swept back onto the queue.

use super::{App, AppError, PollReport};
use crate::erp::Erp;
use crate::ledger::OrderKey;
use crate::queue::Job;
use chrono::{DateTime, Duration, Utc};

impl App {
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

    pub(super) async fn poll_connection(
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

    pub(super) async fn sweep(
        &self,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), AppError> {
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
        for key in self.repo().due_rechecks(&tenant, now, 500).await? {
            let job = Job::Evaluate { order_pk: key.pk() };
            self.enqueue(job, now).await?;
            report.swept_rechecks += 1;
        }
        // An order with open errors holds the problem index entry instead of the recheck one:
        // its clock-driven changes (an authorization expiring, found by the faults harness,
        // seed 42) are looked for among the problem orders, one index query per sweep.
        for rec in self.repo().problem_orders(&tenant, 500, now).await? {
            if rec.recheck_at.is_some_and(|at| at <= now) {
                let job = Job::Evaluate {
                    order_pk: rec.key.pk(),
                };
                self.enqueue(job, now).await?;
                report.swept_rechecks += 1;
            }
        }
        self.sweep_events(&tenant, now, report).await
    }

    /// Events the sweep is due to look at: one whose order is known gets its job again (it was
    /// lost); either way the event is looked at again later, each time twice as late (from the
    /// sweep grace up to [`MAX_EVENT_SWEEP_GAP`]), so events that stay unapplied — early events
    /// whose order never comes, forged ones — cost fewer and fewer reads until they expire.
    async fn sweep_events(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), AppError> {
        let repo = self.repo();
        for ev in repo.due_events(tenant, now, 500, now).await? {
            let next = now + event_sweep_gap(self.settings.sweep_grace, ev.sweeps);
            match repo.event_swept(&ev, next, now).await {
                Ok(()) => {}
                // Applied or arrived again meanwhile: nothing to do for it now.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
            if self
                .order_of_event(&ev.payment_id, ev.reference.as_deref(), now)
                .await?
                .is_some()
            {
                self.enqueue(Job::apply_event(ev.pk(), ev.sk()), now)
                    .await?;
                report.swept_events += 1;
            }
        }
        Ok(())
    }
}

/// The longest gap between two sweeps of one unapplied event.
pub const MAX_EVENT_SWEEP_GAP: Duration = Duration::hours(6);

/// The gap before the sweep looks at an event again after `sweeps` looks: the grace (at least
/// a second), doubled per look, at most [`MAX_EVENT_SWEEP_GAP`].
pub(crate) fn event_sweep_gap(grace: Duration, sweeps: u32) -> Duration {
    super::doubled(grace.max(Duration::seconds(1)), sweeps, MAX_EVENT_SWEEP_GAP)
}
