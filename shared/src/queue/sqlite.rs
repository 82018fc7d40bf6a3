//! The embedded [`Queue`] backend: SQS standard-queue semantics on SQLite, so a local install
//! needs no AWS. Messages live in `queue_messages`; a message received more than `max_receives`
//! times without being acked is moved to `queue_dead` (SQS's redrive to a dead-letter queue).
//!
//! The tables can share a database file with [`crate::store::sqlite::SqliteStore`], and with
//! [`SqliteQueue::sharing`] its connection too, so a stored item and its job are one commit. Time comes
//! only from the `now_ms` arguments, so tests can drive the queue on a simulated clock. Every
//! call runs on tokio's blocking pool against one connection behind a mutex.

use super::{Delivery, Job, Queue, QueueError};
use crate::store::sqlite::{self as sqlite_store, SqliteStore};
use crate::store::{Item, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a writer waits for another connection's lock before giving up with `Backend`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

// AUTOINCREMENT: ids (and therefore message ids and receipts) are never reused, even after the
// newest message was deleted, so an old receipt can never match a newer message.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT    NULL UNIQUE,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (visible_at, id);
CREATE TABLE IF NOT EXISTS queue_dead (
    id            INTEGER PRIMARY KEY,
    body          TEXT    NOT NULL,
    receive_count INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL,
    reason        TEXT    NOT NULL
);
";

/// SQLite implementation of [`Queue`]. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    max_receives: u32,
    /// Opened on a [`SqliteStore`]'s connection: items and jobs can share a commit.
    shares_store: bool,
    /// Signalled after every send that is visible at once (see [`Queue::wait_for_work`]).
    sent: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("max_receives", &self.max_receives)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue in the database file at `path` (WAL mode). A message
    /// is delivered at most `max_receives` times (at least 1); the next receive dead-letters it.
    pub fn open(path: &Path, max_receives: u32) -> Result<SqliteQueue, QueueError> {
        let conn = Connection::open(path).map_err(backend)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Backend(format!(
                "could not switch {} to WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        Self::init(conn, max_receives)
    }

    /// The queue on `store`'s own connection (and database), so that
    /// [`Queue::insert_and_send`] commits an item and its job together: one disk commit
    /// instead of two. Store and queue calls then take turns on that connection.
    pub fn sharing(store: &SqliteStore, max_receives: u32) -> Result<SqliteQueue, QueueError> {
        let conn = store.connection();
        {
            let guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            guard.execute_batch(SCHEMA).map_err(backend)?;
        }
        let mut queue = Self::checked(conn, max_receives)?;
        queue.shares_store = true;
        Ok(queue)
    }

    /// A private, non-persistent queue; for tests and throwaway runs.
    pub fn open_in_memory(max_receives: u32) -> Result<SqliteQueue, QueueError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::init(conn, max_receives)
    }

    fn init(conn: Connection, max_receives: u32) -> Result<SqliteQueue, QueueError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Self::checked(Arc::new(Mutex::new(conn)), max_receives)
    }

    fn checked(conn: Arc<Mutex<Connection>>, max_receives: u32) -> Result<SqliteQueue, QueueError> {
        if max_receives == 0 {
            return Err(QueueError::Backend(
                "max_receives must be at least 1".to_owned(),
            ));
        }
        Ok(SqliteQueue {
            conn,
            max_receives,
            shares_store: false,
            sent: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The jobs of dead-lettered messages, oldest death first. `BadMessage` if one of them does
    /// not parse as a job (such messages are dead-lettered on their first receive).
    pub async fn dead_letters(&self) -> Result<Vec<Job>, QueueError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, body FROM queue_dead ORDER BY dead_at ASC, id ASC")
                .map_err(backend)?;
            let mut rows = stmt.query([]).map_err(backend)?;
            let mut jobs = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let id: i64 = row.get(0).map_err(backend)?;
                let body: String = row.get(1).map_err(backend)?;
                let job = serde_json::from_str(&body)
                    .map_err(|e| QueueError::BadMessage(format!("dead message {id}: {e}")))?;
                jobs.push(job);
            }
            Ok(jobs)
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // Multi-statement work runs in a transaction that rolls back when dropped, so a
            // panic while holding the lock leaves nothing half-done: a poisoned mutex is usable.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| QueueError::Backend(format!("queue task failed: {e}")))?
    }
}

fn backend(e: rusqlite::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Inserts one message (the statement of [`Queue::send`], also used inside a transaction).
fn send_row(conn: &Connection, body: &str, visible_at: i64, now_ms: i64) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO queue_messages (body, visible_at, receive_count, receipt, sent_at)
         VALUES (?1, ?2, 0, NULL, ?3)",
    )
    .map_err(backend)?
    .execute(params![body, visible_at, now_ms])
    .map_err(backend)?;
    Ok(())
}

/// Moves one message to `queue_dead`.
/// Up to `want` messages visible at `now_ms`, oldest first: (id, body, receive count).
fn visible(
    tx: &rusqlite::Transaction<'_>,
    now_ms: i64,
    want: usize,
) -> Result<Vec<(i64, String, i64)>, QueueError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, body, receive_count FROM queue_messages
             WHERE visible_at <= ?1 ORDER BY visible_at ASC, id ASC LIMIT ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![now_ms, i64::try_from(want).unwrap_or(i64::MAX)],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Delivers one message (hidden until `hidden_until`, its receive counted), or dead-letters it
/// when it was received too often or its body is not a job (`None`).
fn deliver(
    tx: &rusqlite::Transaction<'_>,
    (id, body, count): (i64, String, i64),
    max_receives: i64,
    hidden_until: i64,
    now_ms: i64,
) -> Result<Option<Delivery>, QueueError> {
    let count = count.saturating_add(1);
    if count > max_receives {
        tracing::warn!(
            message_id = id,
            receives = count - 1,
            "queue: dead-lettered"
        );
        dead_letter(tx, id, now_ms, "max receives exceeded")?;
        return Ok(None);
    }
    let job: Job = match serde_json::from_str(&body) {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(message_id = id, error = %e, "queue: body is not a job, dead-lettered");
            dead_letter(tx, id, now_ms, &format!("body is not a job: {e}"))?;
            return Ok(None);
        }
    };
    let receipt = format!("{id}:{count}");
    tx.prepare_cached(
        "UPDATE queue_messages SET receive_count = ?1, visible_at = ?2, receipt = ?3
         WHERE id = ?4",
    )
    .map_err(backend)?
    .execute(params![count, hidden_until, receipt, id])
    .map_err(backend)?;
    Ok(Some(Delivery {
        job,
        receipt,
        receive_count: u32::try_from(count).unwrap_or(u32::MAX),
        message_id: id.to_string(),
    }))
}

fn dead_letter(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    now_ms: i64,
    reason: &str,
) -> Result<(), QueueError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO queue_dead (id, body, receive_count, sent_at, dead_at, reason)
         SELECT id, body, receive_count, sent_at, ?2, ?3 FROM queue_messages WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![id, now_ms, reason])
    .map_err(backend)?;
    tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1")
        .map_err(backend)?
        .execute(params![id])
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, job: &Job, delay: Duration, now_ms: i64) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Backend(e.to_string()))?;
        let visible_at = now_ms.saturating_add(millis(delay));
        self.with_conn(move |conn| send_row(conn, &body, visible_at, now_ms))
            .await?;
        if delay.is_zero() {
            self.sent.notify_one();
        }
        Ok(())
    }

    async fn wait_for_work(&self, at_most: Duration) {
        // A send since the last wait left a permit: return at once.
        let _ = tokio::time::timeout(at_most, self.sent.notified()).await;
    }

    async fn insert_and_send(
        &self,
        item: &Item,
        now: i64,
        job: &Job,
        now_ms: i64,
    ) -> Option<Result<bool, QueueError>> {
        if !self.shares_store {
            return None;
        }
        let store_err = |e: StoreError| QueueError::Backend(e.to_string());
        let prepared = serde_json::to_string(job)
            .map_err(|e| QueueError::Backend(e.to_string()))
            .and_then(|job| Ok((job, sqlite_store::body_text(item).map_err(store_err)?)));
        let (job, body) = match prepared {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let item = item.clone();
        Some(
            self.with_conn(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                let inserted =
                    sqlite_store::insert_row(&tx, &item, &body, now).map_err(store_err)?;
                if inserted {
                    send_row(&tx, &job, now_ms, now_ms)?;
                }
                tx.commit().map_err(backend)?;
                Ok(inserted)
            })
            .await
            .inspect(|&inserted| {
                if inserted {
                    self.sent.notify_one();
                }
            }),
        )
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let hidden_until = now_ms.saturating_add(millis(visibility));
        let max_receives = i64::from(self.max_receives);
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut deliveries = Vec::new();
            // Ids handled by this call: with a zero visibility a delivered message is still
            // visible, and it must not come back within the same receive.
            let mut seen: HashSet<i64> = HashSet::new();
            while deliveries.len() < max {
                let want = max - deliveries.len() + seen.len();
                let candidates = visible(&tx, now_ms, want)?;
                let fresh: Vec<_> = candidates
                    .into_iter()
                    .filter(|(id, _, _)| !seen.contains(id))
                    .collect();
                if fresh.is_empty() {
                    break;
                }
                for (id, body, count) in fresh {
                    if deliveries.len() == max {
                        break;
                    }
                    seen.insert(id);
                    let d = deliver(&tx, (id, body, count), max_receives, hidden_until, now_ms)?;
                    deliveries.extend(d);
                }
            }
            tx.commit().map_err(backend)?;
            Ok(deliveries)
        })
        .await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.with_conn(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")
                .map_err(backend)?
                .execute(params![receipt])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(QueueError::StaleReceipt);
            }
            Ok(())
        })
        .await
    }

    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        let visible_at = now_ms.saturating_add(millis(delay));
        self.with_conn(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE queue_messages SET visible_at = ?1 WHERE receipt = ?2")
                .map_err(backend)?
                .execute(params![visible_at, receipt])
                .map_err(backend)?;
            if changed == 0 {
                return Err(QueueError::StaleReceipt);
            }
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        self.with_conn(|conn| {
            let count: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM queue_messages")
                .map_err(backend)?
                .query_row([], |row| row.get(0))
                .map_err(backend)?;
            usize::try_from(count).map_err(|e| QueueError::Backend(e.to_string()))
        })
        .await
    }
}
