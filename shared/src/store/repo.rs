//! Typed access to the single-table model of architecture.md §4, written once against the
//! [`Store`] trait so every backend stores the same items under the same keys:
//!
//! | item | pk / sk |
//! |---|---|
//! | order state | `T#{tenant}#O#{conn}#{order}` / `ORDER` (index `T#{tenant}#PROBLEM` while it has errors) |
//! | operation | same pk / `OP#{op_id}` (index `T#{tenant}#OPEN` by due time while not finished) |
//! | history entry | same pk / `H#{time}#{seq}#{digest}` |
//! | payment → order | `T#{tenant}#PAY#{payment_id}` / `ORDER` |
//! | PSP event | same pk as its payment / `EV#{psp}#{identity}` (index `T#{tenant}#EVENTS` while unapplied; TTL) |
//!
//! A payment's events share the partition of its payment link, so an evaluation finds the
//! pending events of one payment with one partition query, however many other events the
//! tenant has.
//! | poller lease, watermark | `T#{tenant}#C#{conn}` / `LEASE`, `WATERMARK#{kind}` |
//! | budget of unverified events | `T#{tenant}#BUDGET` / `UNVERIFIED#{hour}` (TTL; `repo/events.rs`) |

use super::{Item, Store, StoreError, Write};
use crate::engine::{Flag, Severity};
use crate::ledger::{Operation, OrderKey};
use crate::model::{ErpOrder, PspPayment};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod events;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse<T: for<'de> Deserialize<'de>>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_value(item.body.clone()).map_err(|e| StoreError::Corrupt {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        message: e.to_string(),
    })
}

fn body<T: Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Backend(format!("serialize: {e}")))
}

/// What paybridge keeps about an order between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub key: OrderKey,
    /// The last facts read from the ERP.
    pub facts: Option<ErpOrder>,
    /// Current problems (errors and hints).
    pub flags: Vec<Flag>,
    /// Error codes an operator marked solved ("problem solved"); they stay quiet until they
    /// disappear and come back.
    pub solved: Vec<String>,
    /// Error codes the operator has been told about (e-mail sent). Saved after the
    /// notification, so a crash in between sends it again rather than never.
    #[serde(default)]
    pub notified: Vec<String>,
    /// The PSP's view of the payment at the last fresh read; see [`crate::app`]'s `psp_view`
    /// for when it is trusted instead of reading again.
    #[serde(default)]
    pub psp: Option<PspPayment>,
    /// Since when every read of the payment at the PSP has failed (unreachable, no such
    /// payment); `None` once a read succeeds. The evaluation is repeated after as long again.
    #[serde(default)]
    pub psp_unreadable_since: Option<DateTime<Utc>>,
    /// When paybridge first saw the order (records from before this field: their first
    /// evaluation after the upgrade).
    #[serde(default)]
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Since when an operator has taken the order out of automation ("hands-off"), if so.
    #[serde(default)]
    pub hands_off_since: Option<DateTime<Utc>>,
    /// When the last decision may change by the clock alone: the record is in the recheck
    /// index until then (unless it has open errors), and the sweep evaluates it when due.
    #[serde(default)]
    pub recheck_at: Option<DateTime<Utc>>,
    /// §3.6: the PSP's id of the payment the customer made on paybridge's payment link, for
    /// an order the ERP knows no payment of.
    #[serde(default)]
    pub link_payment_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub version: u64,
}

impl OrderRecord {
    /// The order's PSP payment: the one the ERP names, else the one made on paybridge's
    /// payment link.
    pub fn payment_id(&self) -> Option<&str> {
        self.facts
            .as_ref()
            .and_then(|f| f.psp_payment_id.as_deref())
            .filter(|p| !p.is_empty())
            .or(self.link_payment_id.as_deref())
    }

    pub fn new(key: OrderKey, now: DateTime<Utc>) -> OrderRecord {
        OrderRecord {
            key,
            facts: None,
            flags: Vec::new(),
            solved: Vec::new(),
            notified: Vec::new(),
            psp: None,
            psp_unreadable_since: None,
            first_seen_at: Some(now),
            hands_off_since: None,
            recheck_at: None,
            link_payment_id: None,
            updated_at: now,
            version: 0,
        }
    }

    /// Open (unsolved) errors.
    pub fn open_errors(&self) -> impl Iterator<Item = &Flag> {
        self.flags
            .iter()
            .filter(|f| f.severity == Severity::Error && !self.solved.contains(&f.code))
    }
}

/// One line of an order's history: every transition with its cause and references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub op_id: Option<String>,
    pub what: String,
    /// PSP transaction id or ERP reference, when there is one.
    pub reference: Option<String>,
}

/// A verified PSP event as stored before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub psp: String,
    pub identity: String,
    pub tenant: String,
    pub event: String,
    pub payment_id: String,
    pub public_key: String,
    pub received_at: DateTime<Utc>,
    pub applied: bool,
    /// No order was known for the payment when the event arrived (an early event, or a forged
    /// one): it counts against the tenant's budget and is kept [`UNVERIFIED_EVENT_TTL_HOURS`].
    #[serde(default)]
    pub unverified: bool,
    /// When the sweep looks at it next (its index position while unapplied); `None`: the sweep
    /// grace after `received_at`.
    #[serde(default)]
    pub next_sweep_at: Option<DateTime<Utc>>,
    /// How often the sweep has looked at it since it arrived (its back-off doubles each time).
    #[serde(default)]
    pub sweeps: u32,
    /// The payment's merchant reference the webhook named (Paygate: `TransID`), by which a
    /// payment paybridge asked for itself (§3.6) finds its order.
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(skip)]
    pub version: u64,
}

impl EventRecord {
    /// The partition of the payment the event names (shared with its payment link).
    pub fn pk(&self) -> String {
        payment_pk(&self.tenant, &self.payment_id)
    }

    /// Unique per PSP and event identity, so a repeat finds the stored event.
    pub fn sk(&self) -> String {
        format!("EV#{}#{}", self.psp, self.identity)
    }
}

fn payment_pk(tenant: &str, payment_id: &str) -> String {
    format!("T#{tenant}#PAY#{payment_id}")
}

/// Orders history entries written in the same millisecond by one process.
static HISTORY_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Events are kept this long (TTL).
pub const EVENT_TTL_DAYS: i64 = 30;

/// An unapplied event whose payment had no order when it arrived is kept this long. It is only
/// a signal: an order imported later is read from the PSP at its first evaluation anyway.
pub const UNVERIFIED_EVENT_TTL_HOURS: i64 = 24;

/// The window of the tenant's budget of unverified events.
pub const BUDGET_WINDOW_SECS: i64 = 3600;

/// Typed repository over any [`Store`].
pub struct Repo<'s> {
    pub store: &'s dyn Store,
}

impl<'s> Repo<'s> {
    pub fn new(store: &'s dyn Store) -> Repo<'s> {
        Repo { store }
    }

    // ---- orders ----

    pub async fn order(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<Option<OrderRecord>, StoreError> {
        match self.store.get(&key.pk(), "ORDER", now.timestamp()).await? {
            None => Ok(None),
            Some(item) => {
                let mut r: OrderRecord = parse(&item)?;
                r.version = item.version;
                Ok(Some(r))
            }
        }
    }

    /// Inserts (version 0) or CAS-updates the order record; returns the new version.
    pub async fn save_order(
        &self,
        rec: &OrderRecord,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let item = Self::order_item(rec)?;
        if rec.version == 0 {
            if self.store.insert(&item, now.timestamp()).await? {
                Ok(1)
            } else {
                Err(StoreError::Conflict {
                    pk: item.pk.clone(),
                    sk: item.sk.clone(),
                })
            }
        } else {
            self.store.update(&item).await
        }
    }

    /// The write that saves the order record: an insert at version 0, else a CAS update.
    pub fn order_write(rec: &OrderRecord) -> Result<Write, StoreError> {
        let item = Self::order_item(rec)?;
        Ok(if rec.version == 0 {
            Write::Insert(item)
        } else {
            Write::Update(item)
        })
    }

    fn order_item(rec: &OrderRecord) -> Result<Item, StoreError> {
        let mut item = Item::new(rec.key.pk(), "ORDER", body(rec)?);
        // One index entry per item: an order with open errors is listed as a problem (the
        // operator looks at it); otherwise one that waits for the clock is listed by when.
        if rec.open_errors().next().is_some() {
            item.gsi_pk = Some(format!("T#{}#PROBLEM", rec.key.tenant));
            item.gsi_sk = Some(format!("{}#{}", ts(rec.updated_at), rec.key.pk()));
        } else if let Some(at) = rec.recheck_at {
            item.gsi_pk = Some(format!("T#{}#RECHECK", rec.key.tenant));
            item.gsi_sk = Some(format!("{}#{}", ts(at), rec.key.pk()));
        }
        item.version = rec.version;
        Ok(item)
    }

    /// Commits `writes` all or none ([`Store::commit`]).
    pub async fn commit(
        &self,
        writes: &[Write],
        now: DateTime<Utc>,
    ) -> Result<Vec<u64>, StoreError> {
        self.store.commit(writes, now.timestamp()).await
    }

    /// Orders with open errors, oldest first.
    pub async fn problem_orders(
        &self,
        tenant: &str,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let items = self
            .store
            .query_index(&format!("T#{tenant}#PROBLEM"), None, limit, now.timestamp())
            .await?;
        items
            .iter()
            .map(|i| {
                let mut r: OrderRecord = parse(i)?;
                r.version = i.version;
                Ok(r)
            })
            .collect()
    }

    // ---- payment index ----

    pub async fn link_payment(
        &self,
        tenant: &str,
        payment_id: &str,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = Item::new(
            payment_pk(tenant, payment_id),
            "ORDER",
            serde_json::json!({ "order_pk": key.pk() }),
        );
        self.store.insert(&item, now.timestamp()).await?;
        Ok(())
    }

    pub async fn order_for_payment(
        &self,
        tenant: &str,
        payment_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OrderKey>, StoreError> {
        let Some(item) = self
            .store
            .get(&payment_pk(tenant, payment_id), "ORDER", now.timestamp())
            .await?
        else {
            return Ok(None);
        };
        Ok(item
            .body
            .get("order_pk")
            .and_then(|v| v.as_str())
            .and_then(OrderKey::from_pk))
    }

    // ---- operations ----

    fn op_item(op: &Operation) -> Result<Item, StoreError> {
        let mut item = Item::new(op.order.pk(), format!("OP#{}", op.id), body(op)?);
        // Open operations, and finished ones whose follow-up evaluation has not run yet.
        if !op.status.is_terminal() || op.follow_up {
            let due = if op.status.is_terminal() {
                op.updated_at
            } else {
                op.next_attempt_at
                    .or(op.lease_until)
                    .unwrap_or(op.created_at)
            };
            item.gsi_pk = Some(format!("T#{}#OPEN", op.order.tenant));
            item.gsi_sk = Some(format!("{}#{}", ts(due), op.order.pk()));
        }
        item.version = op.version;
        Ok(item)
    }

    /// Conditional insert of a planned operation: false if it exists already.
    pub async fn insert_op(&self, op: &Operation, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store
            .insert(&Self::op_item(op)?, now.timestamp())
            .await
    }

    pub async fn op(
        &self,
        key: &OrderKey,
        op_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, StoreError> {
        match self
            .store
            .get(&key.pk(), &format!("OP#{op_id}"), now.timestamp())
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let mut op: Operation = parse(&item)?;
                op.version = item.version;
                Ok(Some(op))
            }
        }
    }

    /// CAS update; on success `op.version` is the new version.
    pub async fn save_op(&self, op: &mut Operation) -> Result<(), StoreError> {
        op.version = self.store.update(&Self::op_item(op)?).await?;
        Ok(())
    }

    /// CAS update of the operation together with its history `entries`, in one commit when
    /// there are entries; on success `op.version` is the new version.
    pub async fn save_op_with_history(
        &self,
        op: &mut Operation,
        entries: &[HistoryEntry],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return self.save_op(op).await;
        }
        let mut writes = vec![Self::op_update(op)?];
        for e in entries {
            writes.push(Write::Insert(Self::history_item(&op.order, e)?));
        }
        op.version = self.commit(&writes, now).await?[0];
        Ok(())
    }

    /// The conditional insert of a planned operation, as a write of a commit.
    pub fn op_insert(op: &Operation) -> Result<Write, StoreError> {
        Ok(Write::Insert(Self::op_item(op)?))
    }

    /// The CAS update of an operation read at `op.version`, as a write of a commit.
    pub fn op_update(op: &Operation) -> Result<Write, StoreError> {
        Ok(Write::Update(Self::op_item(op)?))
    }

    pub async fn ops(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, StoreError> {
        let items = self.store.query(&key.pk(), "OP#", now.timestamp()).await?;
        items
            .iter()
            .map(|i| {
                let mut op: Operation = parse(i)?;
                op.version = i.version;
                Ok(op)
            })
            .collect()
    }

    /// Items of an index whose sort time has come by `now`, oldest first.
    async fn due_items(
        &self,
        gsi: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let max = format!("{}#\u{10FFFF}", ts(now));
        self.store
            .query_index(gsi, Some(&max), limit, now.timestamp())
            .await
    }

    /// Orders whose recheck time has come by `now` (the sweep evaluates them again).
    pub async fn due_rechecks(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrderKey>, StoreError> {
        let items = self
            .due_items(&format!("T#{tenant}#RECHECK"), now, limit)
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| OrderKey::from_pk(&i.pk))
            .collect())
    }

    /// Operations due by `now` (the outbox sweep: planned but never enqueued, whose job was
    /// lost, or finished without their follow-up evaluation).
    pub async fn due_ops(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(OrderKey, String)>, StoreError> {
        let items = self
            .due_items(&format!("T#{tenant}#OPEN"), now, limit)
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let key = OrderKey::from_pk(&i.pk)?;
                Some((key, i.sk.strip_prefix("OP#")?.to_string()))
            })
            .collect())
    }

    // ---- history ----

    pub async fn add_history(
        &self,
        key: &OrderKey,
        entry: &HistoryEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = Self::history_item(key, entry)?;
        self.store.insert(&item, now.timestamp()).await?;
        Ok(())
    }

    /// A history entry as an item; its key is unique (time, a sequence number of this process
    /// and a digest of the entry), so its insert does not fail a commit.
    pub fn history_item(key: &OrderKey, entry: &HistoryEntry) -> Result<Item, StoreError> {
        let b = body(entry)?;
        let digest = hex::encode(&Sha256::digest(b.to_string().as_bytes())[..6]);
        // Entries of the same millisecond keep their order within this process.
        let seq = HISTORY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Item::new(
            key.pk(),
            format!("H#{}#{seq:012}#{digest}", ts(entry.at)),
            b,
        ))
    }

    pub async fn history(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let items = self.store.query(&key.pk(), "H#", now.timestamp()).await?;
        items.iter().map(parse).collect()
    }

    // ---- poller lease and watermark ----

    /// Takes or renews the poller lease of a connection; false if another holder has it.
    pub async fn acquire_lease(
        &self,
        tenant: &str,
        conn: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let pk = format!("T#{tenant}#C#{conn}");
        let until = now + ttl;
        let new_body = serde_json::json!({ "holder": holder, "until": ts(until) });
        match self.store.get(&pk, "LEASE", now.timestamp()).await? {
            None => {
                self.store
                    .insert(&Item::new(pk, "LEASE", new_body), now.timestamp())
                    .await
            }
            Some(item) => {
                let held_by = item
                    .body
                    .get("holder")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let held_until = item
                    .body
                    .get("until")
                    .and_then(|v| v.as_str())
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&Utc));
                if held_by != holder && held_until.is_some_and(|u| u > now) {
                    return Ok(false);
                }
                let mut next = Item::new(pk, "LEASE", new_body);
                next.version = item.version;
                match self.store.update(&next).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.is_conflict() => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    pub async fn release_lease(
        &self,
        tenant: &str,
        conn: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let pk = format!("T#{tenant}#C#{conn}");
        if let Some(item) = self.store.get(&pk, "LEASE", now.timestamp()).await?
            && item.body.get("holder").and_then(|v| v.as_str()) == Some(holder)
        {
            match self.store.delete(&pk, "LEASE", item.version).await {
                Ok(()) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn watermark(
        &self,
        tenant: &str,
        conn: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let pk = format!("T#{tenant}#C#{conn}");
        Ok(self
            .store
            .get(&pk, &format!("WATERMARK#{kind}"), now.timestamp())
            .await?
            .and_then(|i| Some((i.body.get("value")?.as_str()?.to_string(), i.version))))
    }

    /// Advances the watermark; `version` is what [`Repo::watermark`] returned (0 = none yet).
    pub async fn set_watermark(
        &self,
        tenant: &str,
        conn: &str,
        kind: &str,
        value: &str,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item = Item::new(
            format!("T#{tenant}#C#{conn}"),
            format!("WATERMARK#{kind}"),
            serde_json::json!({ "value": value }),
        );
        if version == 0 {
            if !self.store.insert(&item, now.timestamp()).await? {
                return Err(StoreError::Conflict {
                    pk: item.pk,
                    sk: item.sk,
                });
            }
        } else {
            item.version = version;
            self.store.update(&item).await?;
        }
        Ok(())
    }
}
