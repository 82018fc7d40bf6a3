//! Durable state behind one small trait, so the embedded (SQLite) and the AWS (DynamoDB) backends
//! are interchangeable and run the same conformance suite ([`conformance`]).
//!
//! The model is DynamoDB's single table (architecture.md §4): items addressed by partition key
//! `pk` and sort key `sk`, each with a `version` for optimistic concurrency, an optional TTL and
//! one optional secondary-index entry (`gsi_pk`, `gsi_sk`) used for "problem orders by time" and
//! "open operations by due time". Several writes can be committed together, all or none
//! ([`Store::commit`]: a SQLite transaction, a DynamoDB `TransactWriteItems`). Typed access (orders, operations, history, events, leases,
//! watermarks) lives in [`repo`] on top of this trait and is therefore shared by all backends.

pub mod conformance;
#[cfg(feature = "aws")]
pub mod dynamo;
pub mod repo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One stored item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Starts at 1 on insert; every successful conditional update increments it by one.
    pub version: u64,
    /// JSON document.
    pub body: serde_json::Value,
    /// Unix seconds from which on the item is dead (`expires_at <= now`); readers treat expired
    /// items as absent. `update` does not look at it (DynamoDB's TTL deletes lazily too).
    pub expires_at: Option<i64>,
    /// Secondary index entry.
    pub gsi_pk: Option<String>,
    pub gsi_sk: Option<String>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, body: serde_json::Value) -> Item {
        Item {
            pk: pk.into(),
            sk: sk.into(),
            version: 0,
            body,
            expires_at: None,
            gsi_pk: None,
            gsi_sk: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item exists (insert) or its version moved on (update).
    #[error("conditional write failed for {pk}/{sk}")]
    Conflict { pk: String, sk: String },
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored item {pk}/{sk} is not valid: {message}")]
    Corrupt {
        pk: String,
        sk: String,
        message: String,
    },
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// DynamoDB's limit of actions in one transaction, and so the limit of one [`Store::commit`].
pub const MAX_COMMIT_WRITES: usize = 100;

/// One write of a [`Store::commit`], with the same condition as the single-item call.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// As [`Store::insert`], except that a live item with the key fails the commit (`Conflict`).
    Insert(Item),
    /// As [`Store::update`].
    Update(Item),
    /// As [`Store::delete`].
    Delete {
        pk: String,
        sk: String,
        version: u64,
    },
}

impl Write {
    /// The key of the item written.
    pub fn key(&self) -> (&str, &str) {
        match self {
            Write::Insert(i) | Write::Update(i) => (&i.pk, &i.sk),
            Write::Delete { pk, sk, .. } => (pk, sk),
        }
    }

    /// The item's version after the write: 1 for an insert, the next for an update, 0 when
    /// deleted.
    pub fn version_after(&self) -> Result<u64, StoreError> {
        match self {
            Write::Insert(_) => Ok(1),
            Write::Update(i) => i.version.checked_add(1).ok_or_else(|| {
                StoreError::Backend(format!("version of {}/{} overflows", i.pk, i.sk))
            }),
            Write::Delete { .. } => Ok(0),
        }
    }
}

/// What every backend refuses before it writes anything: more than [`MAX_COMMIT_WRITES`], or two
/// writes of one item (DynamoDB cannot do either in one transaction).
pub fn check_commit(writes: &[Write]) -> Result<(), StoreError> {
    if writes.len() > MAX_COMMIT_WRITES {
        return Err(StoreError::Backend(format!(
            "a commit holds at most {MAX_COMMIT_WRITES} writes, not {}",
            writes.len()
        )));
    }
    let mut keys: Vec<(&str, &str)> = writes.iter().map(Write::key).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(StoreError::Backend(format!(
            "a commit writes {}/{} twice",
            w[0].0, w[0].1
        )));
    }
    Ok(())
}

/// The storage contract. Every write is atomic per item; `now` (unix seconds) is passed in so
/// TTL filtering is deterministic under a simulated clock.
#[async_trait]
pub trait Store: Send + Sync {
    /// The item, unless absent or expired at `now`.
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError>;

    /// Inserts `item` with version 1 if no live item has its key. Returns false (and changes
    /// nothing) when one exists. An expired item is replaced.
    async fn insert(&self, item: &Item, now: i64) -> Result<bool, StoreError>;

    /// Replaces the item if its stored version equals `item.version`; the stored version becomes
    /// `item.version + 1`, which is returned. `Conflict` otherwise (also when absent).
    async fn update(&self, item: &Item) -> Result<u64, StoreError>;

    /// Live items of one partition whose sort key starts with `sk_prefix`, ascending by sk.
    async fn query(&self, pk: &str, sk_prefix: &str, now: i64) -> Result<Vec<Item>, StoreError>;

    /// Live items whose index key is `gsi_pk` and whose index sort key is ≤ `gsi_sk_max`
    /// (when given), ascending by index sort key, at most `limit`.
    async fn query_index(
        &self,
        gsi_pk: &str,
        gsi_sk_max: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Item>, StoreError>;

    /// Deletes the item if its version matches; `Conflict` otherwise.
    async fn delete(&self, pk: &str, sk: &str, version: u64) -> Result<(), StoreError>;

    /// Applies every write or none: when one condition fails, nothing is written and the error
    /// is a `Conflict` naming that item. Returns each write's [`Write::version_after`]. Refused
    /// before writing when [`check_commit`] refuses. An empty commit writes nothing.
    async fn commit(&self, writes: &[Write], now: i64) -> Result<Vec<u64>, StoreError>;
}
