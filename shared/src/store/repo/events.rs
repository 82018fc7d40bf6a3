//! The PSP-event items of the [`Repo`] (stored before a webhook is acknowledged, found by
//! payment, swept with a doubling gap while unapplied) and the tenant's budget of unverified
//! events (one counter item per window).

use super::*;

impl Repo<'_> {
    /// The stored item of an event.
    pub(crate) fn event_item(ev: &EventRecord, now: DateTime<Utc>) -> Result<Item, StoreError> {
        let mut item = Item::new(ev.pk(), ev.sk(), body(ev)?);
        item.expires_at = Some(if ev.unverified && !ev.applied {
            ev.received_at.timestamp() + UNVERIFIED_EVENT_TTL_HOURS * 3600
        } else {
            now.timestamp() + EVENT_TTL_DAYS * 86_400
        });
        if !ev.applied {
            // Ordered by when the sweep is due to look at it.
            let due = ev.next_sweep_at.unwrap_or(ev.received_at);
            item.gsi_pk = Some(format!("T#{}#EVENTS", ev.tenant));
            item.gsi_sk = Some(format!("{}#{}", ts(due), ev.pk()));
        }
        item.version = ev.version;
        Ok(item)
    }

    /// Stores a verified event; false if the same event was stored before (a repeat).
    pub async fn insert_event(
        &self,
        ev: &EventRecord,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store
            .insert(&Self::event_item(ev, now)?, now.timestamp())
            .await
    }

    pub async fn event(
        &self,
        pk: &str,
        sk: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<EventRecord>, StoreError> {
        match self.store.get(pk, sk, now.timestamp()).await? {
            None => Ok(None),
            Some(item) => {
                let mut e: EventRecord = parse(&item)?;
                e.version = item.version;
                Ok(Some(e))
            }
        }
    }

    /// CAS on the version `ev` was read at.
    pub async fn mark_event_applied(
        &self,
        ev: &EventRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let applied = EventRecord {
            applied: true,
            ..ev.clone()
        };
        self.store.update(&Self::event_item(&applied, now)?).await?;
        Ok(())
    }

    /// The same event arrived again: it is unapplied again, received now, due for the sweep at
    /// `sweep_at` (as a new event), and any evaluation that read it before fails to mark it
    /// applied. CAS on the version `ev` was read at.
    pub async fn rearm_event(
        &self,
        ev: &EventRecord,
        sweep_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let again = EventRecord {
            applied: false,
            received_at: now,
            next_sweep_at: Some(sweep_at),
            sweeps: 0,
            ..ev.clone()
        };
        self.store.update(&Self::event_item(&again, now)?).await?;
        Ok(())
    }

    /// The stored events of one payment not applied yet, oldest first: one partition query.
    pub async fn payment_events(
        &self,
        tenant: &str,
        payment_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let items = self
            .store
            .query(&payment_pk(tenant, payment_id), "EV#", now.timestamp())
            .await?;
        let mut events = Vec::new();
        for i in &items {
            let mut e: EventRecord = parse(i)?;
            e.version = i.version;
            if !e.applied {
                events.push(e);
            }
        }
        events.sort_by_key(|e| e.received_at);
        Ok(events)
    }

    /// Stored events not applied yet (early events, or events whose job was lost), all of them
    /// up to `limit`, in the sweep's order.
    pub async fn unapplied_events(
        &self,
        tenant: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.events_by_sweep(tenant, None, limit, now).await
    }

    /// Unapplied events the sweep is due to look at by `due` (received, or last swept, long
    /// enough ago), the most overdue first.
    pub async fn due_events(
        &self,
        tenant: &str,
        due: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let max = format!("{}#\u{10FFFF}", ts(due));
        self.events_by_sweep(tenant, Some(&max), limit, now).await
    }

    async fn events_by_sweep(
        &self,
        tenant: &str,
        max: Option<&str>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let items = self
            .store
            .query_index(&format!("T#{tenant}#EVENTS"), max, limit, now.timestamp())
            .await?;
        items
            .iter()
            .map(|i| {
                let mut e: EventRecord = parse(i)?;
                e.version = i.version;
                Ok(e)
            })
            .collect()
    }

    /// The sweep looked at `ev` and found nothing to do yet: it looks again at `next`. CAS on
    /// the version `ev` was read at.
    pub async fn event_swept(
        &self,
        ev: &EventRecord,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let later = EventRecord {
            next_sweep_at: Some(next),
            sweeps: ev.sweeps.saturating_add(1),
            ..ev.clone()
        };
        self.store.update(&Self::event_item(&later, now)?).await?;
        Ok(())
    }

    /// Takes one unit of the tenant's budget of unverified events in the current window of
    /// [`BUDGET_WINDOW_SECS`]: `Ok(None)` when taken, `Ok(Some(secs))` when `limit` units are
    /// used already (`secs` until the window ends). One counter item per window, updated with
    /// CAS; a conflict is retried, and one that persists is an error.
    pub async fn take_unverified_budget(
        &self,
        tenant: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let window = now.timestamp().div_euclid(BUDGET_WINDOW_SECS);
        let ends = (window + 1) * BUDGET_WINDOW_SECS;
        let (pk, sk) = (format!("T#{tenant}#BUDGET"), format!("UNVERIFIED#{window}"));
        let mut last = None;
        for _ in 0..16 {
            let item = self.store.get(&pk, &sk, now.timestamp()).await?;
            let used = item
                .as_ref()
                .and_then(|i| i.body.get("used"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if used >= u64::from(limit) {
                return Ok(Some(ends - now.timestamp()));
            }
            let mut next = Item::new(&pk, &sk, serde_json::json!({ "used": used + 1 }));
            next.expires_at = Some(ends + BUDGET_WINDOW_SECS);
            let written = match item {
                None => self.store.insert(&next, now.timestamp()).await?,
                Some(i) => {
                    next.version = i.version;
                    match self.store.update(&next).await {
                        Ok(_) => true,
                        Err(e) if e.is_conflict() => {
                            last = Some(e);
                            false
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if written {
                return Ok(None);
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Backend("budget counter kept changing".into())))
    }
}
