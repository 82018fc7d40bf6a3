//! What PSPs post: a webhook verified by its PSP's connector ([`crate::psp::webhook`]) and
//! stored as an event before it is acknowledged; a repeat re-arms the stored event; the event's
//! job is queued (in the same commit where the queue shares the store's database; the sweep
//! picks it up if that fails).
//!
//! A PSP's account identifier (a public key, for some PSPs) is public, so anyone can post a body that
//! passes verification. The connectors keep one stored event per (account, payment), so what
//! else a body says (event name, URLs) never makes a new one, and a repeat of an applied event
//! re-reads its payment a second later (repeats in between coalesce). An event for a payment
//! paybridge knows is always taken (it only makes paybridge read that payment again); one for a payment with no known order is *unverified*:
//! it takes a unit of the tenant's hourly budget (`tenant.unverified_events_per_hour` of the configuration,
//! past it: 429, a log line and [`over_budget_count`]), is kept only
//! [`crate::store::repo::UNVERIFIED_EVENT_TTL_HOURS`], and makes no PSP request until its order is imported.

use super::{App, MAX_WEBHOOK_BYTES, WebhookAck, WebhookError};
use crate::queue::Job;
use crate::store::repo::{EventRecord, Repo};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

/// Webhooks refused for the budget of unverified events since the process started.
static OVER_BUDGET: AtomicU64 = AtomicU64::new(0);

/// Budget takes of this process one at a time: they all update one counter item, and
/// concurrent CAS updates from one process would only conflict (across processes they retry).
static BUDGET_TAKES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long after a repeat of an applied event its payment is evaluated again.
const REARM_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// How many webhooks this process refused for the budget of unverified events. Each refusal
/// also logs a warning with `metric = "webhooks_over_budget"` and this running count, for a log
/// metric filter (CloudWatch on AWS).
pub fn over_budget_count() -> u64 {
    OVER_BUDGET.load(Ordering::Relaxed)
}

impl App {
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
        let repo = self.repo();
        let known = self
            .order_of_event(&event.payment_id, event.reference.as_deref(), now)
            .await
            .map_err(|_| WebhookError::Unavailable)?
            .is_some();
        // A new or re-armed event is the sweep's after the grace (its job is queued now).
        let sweep_at = now + self.settings.sweep_grace;
        let ev = EventRecord {
            psp: psp.to_string(),
            identity: event.identity,
            tenant: self.tenant().to_string(),
            event: event.event,
            payment_id: event.payment_id,
            public_key: event.account,
            received_at: now,
            applied: false,
            unverified: !known,
            next_sweep_at: Some(sweep_at),
            sweeps: 0,
            reference: event.reference,
            version: 0,
        };
        if !known {
            self.take_budget(psp, now).await?;
        }
        let (inserted, queued) = self.store_event(&ev, now).await?;
        if !inserted {
            // The same body again: a PSP may send identical bodies for distinct happenings (a
            // second partial transfer), so it is a signal to look again, not only a replay.
            // Still-unapplied signals coalesce; a consumed one is re-armed and queued once.
            for _ in 0..3 {
                let stored = match repo.event(&ev.pk(), &ev.sk(), now).await {
                    Ok(Some(stored)) => stored,
                    Ok(None) => return Err(WebhookError::Unavailable), // expired meanwhile
                    Err(_) => return Err(WebhookError::Unavailable),
                };
                let was_applied = stored.applied;
                // The newest name is the one the history shows when it is applied.
                let stored = EventRecord {
                    event: ev.event.clone(),
                    ..stored
                };
                match repo.rearm_event(&stored, sweep_at, now).await {
                    Ok(()) => {
                        if was_applied {
                            // A second later: repeats in between coalesce into this one job,
                            // so a flood naming one payment reads it about once a second.
                            self.enqueue_event(&ev, REARM_DELAY, now).await;
                        }
                        return Ok(WebhookAck { duplicate: true });
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(_) => return Err(WebhookError::Unavailable),
                }
            }
            return Err(WebhookError::Unavailable);
        }
        if !queued {
            self.enqueue_event(&ev, std::time::Duration::ZERO, now)
                .await;
        }
        Ok(WebhookAck { duplicate: false })
    }

    /// Takes a unit of the budget of unverified events, or refuses the webhook.
    async fn take_budget(&self, psp: &str, now: DateTime<Utc>) -> Result<(), WebhookError> {
        let limit = self.config.tenant.unverified_events_per_hour;
        let taken = {
            let _one_at_a_time = BUDGET_TAKES.lock().await;
            self.repo()
                .take_unverified_budget(self.tenant(), limit, now)
                .await
        };
        match taken {
            Ok(None) => Ok(()),
            Ok(Some(retry_after)) => {
                let refused = OVER_BUDGET.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    psp,
                    limit,
                    retry_after,
                    metric = "webhooks_over_budget",
                    refused,
                    "webhook refused: budget of events for unknown payments used up"
                );
                Err(WebhookError::OverBudget(retry_after))
            }
            Err(_) => Err(WebhookError::Unavailable),
        }
    }

    /// Stores a new event: (inserted, its job queued). Where the queue shares the store's
    /// database (`serve`), the event and its job are one commit; elsewhere the job is sent
    /// after the insert.
    async fn store_event(
        &self,
        ev: &EventRecord,
        now: DateTime<Utc>,
    ) -> Result<(bool, bool), WebhookError> {
        let item = Repo::event_item(ev, now).map_err(|_| WebhookError::Unavailable)?;
        let job = Job::apply_event(ev.pk(), ev.sk());
        let together = self
            .queue
            .insert_and_send(&item, now.timestamp(), &job, now.timestamp_millis())
            .await;
        match together {
            Some(result) => {
                let inserted = result.map_err(|_| WebhookError::Unavailable)?;
                Ok((inserted, inserted))
            }
            None => {
                let inserted = self
                    .repo()
                    .insert_event(ev, now)
                    .await
                    .map_err(|_| WebhookError::Unavailable)?;
                Ok((inserted, false))
            }
        }
    }

    /// Queues a stored event's job; if that fails the sweep picks the event up.
    pub(super) async fn enqueue_event(
        &self,
        ev: &EventRecord,
        delay: std::time::Duration,
        now: DateTime<Utc>,
    ) {
        let job = Job::apply_event(ev.pk(), ev.sk());
        if let Err(e) = self.queue.send(&job, delay, now.timestamp_millis()).await {
            tracing::warn!(error = %e, "event stored but not enqueued; the sweep picks it up");
        }
    }
}
