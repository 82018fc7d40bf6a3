//! What PSPs post: a webhook verified by its PSP's connector ([`crate::psp::webhook`]) and
//! stored as an event before it is acknowledged; a repeat re-arms the stored event; the event's
//! job is queued (in the same commit where the queue shares the store's database; the sweep
//! picks it up if that fails).

use super::{App, MAX_WEBHOOK_BYTES, WebhookAck, WebhookError};
use crate::queue::Job;
use crate::store::repo::{EventRecord, Repo};
use chrono::{DateTime, Utc};

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
                match repo.rearm_event(&stored, now).await {
                    Ok(()) => {
                        if stored.applied {
                            self.enqueue_event(&ev, now).await;
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
            self.enqueue_event(&ev, now).await;
        }
        Ok(WebhookAck { duplicate: false })
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
    pub(super) async fn enqueue_event(&self, ev: &EventRecord, now: DateTime<Utc>) {
        let job = Job::apply_event(ev.pk(), ev.sk());
        if let Err(e) = self
            .queue
            .send(&job, std::time::Duration::ZERO, now.timestamp_millis())
            .await
        {
            tracing::warn!(error = %e, "event stored but not enqueued; the sweep picks it up");
        }
    }
}
