//! The embedded [`Store`] backend: one SQLite file (WAL mode) holding the single-table item model
//! in a table `items`, with an index on the secondary-index columns.
//!
//! Every call runs on tokio's blocking pool against one connection behind a mutex, so the store
//! can be shared freely between tasks of a multi-thread runtime. Each write is a single SQL
//! statement (conditional insert, compare-and-swap update, conditional delete), which makes it
//! atomic per item even when several processes open the same file; a commit of several writes
//! is one immediate transaction. A queue opened with
//! [`crate::queue::sqlite::SqliteQueue::sharing`] uses the same connection, so an item and a
//! job can be committed together.

use super::{Item, Store, StoreError, Write, check_commit};
use async_trait::async_trait;
use rusqlite::{Connection, Row, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a writer waits for another connection's lock before giving up with `Backend`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk         TEXT    NOT NULL,
    sk         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    expires_at INTEGER NULL,
    gsi_pk     TEXT    NULL,
    gsi_sk     TEXT    NULL,
    PRIMARY KEY (pk, sk)
);
CREATE INDEX IF NOT EXISTS items_gsi ON items (gsi_pk, gsi_sk);
";

const COLUMNS: &str = "pk, sk, version, body, expires_at, gsi_pk, gsi_sk";

/// SQLite implementation of [`Store`]. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, switches it to WAL mode and
    /// creates the schema. The same file may also hold the queue's tables.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not switch {} to WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        Self::init(conn)
    }

    /// A private, non-persistent database; for tests and throwaway runs.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The store's connection, for a queue that shares it (and its transactions).
    pub(crate) fn connection(&self) -> Arc<Mutex<Connection>> {
        Arc::clone(&self.conn)
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done write behind (every write
            // is one statement or one transaction, rolled back when dropped), so a poisoned
            // mutex is still safe to use.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn conflict(pk: &str, sk: &str) -> StoreError {
    StoreError::Conflict {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
    }
}

pub(crate) fn body_text(item: &Item) -> Result<String, StoreError> {
    serde_json::to_string(&item.body).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The smallest string greater than every string that starts with `prefix`, if there is one.
/// SQLite compares TEXT bytewise, and UTF-8 byte order is code point order, so
/// `prefix <= sk < upper` holds exactly for the keys starting with `prefix`.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The conditional insert of [`Store::insert`] on `conn` (or inside a transaction on it): one
/// statement that inserts, or takes over the key only when the existing item is expired.
pub(crate) fn insert_row(
    conn: &Connection,
    item: &Item,
    body: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO items (pk, sk, version, body, expires_at, gsi_pk, gsi_sk)
             VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)
             ON CONFLICT (pk, sk) DO UPDATE SET
                 version = 1,
                 body = excluded.body,
                 expires_at = excluded.expires_at,
                 gsi_pk = excluded.gsi_pk,
                 gsi_sk = excluded.gsi_sk
             WHERE items.expires_at IS NOT NULL AND items.expires_at <= ?7",
        )
        .map_err(backend)?;
    let changed = stmt
        .execute(params![
            item.pk,
            item.sk,
            body,
            item.expires_at,
            item.gsi_pk,
            item.gsi_sk,
            now
        ])
        .map_err(backend)?;
    Ok(changed == 1)
}

/// Reads one row selected with [`COLUMNS`].
fn row_to_item(row: &Row<'_>) -> Result<Item, StoreError> {
    let pk: String = row.get(0).map_err(backend)?;
    let sk: String = row.get(1).map_err(backend)?;
    let version: i64 = row.get(2).map_err(backend)?;
    let body: String = row.get(3).map_err(backend)?;
    let corrupt = |message: String| StoreError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        message,
    };
    let version =
        u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?;
    let body =
        serde_json::from_str(&body).map_err(|e| corrupt(format!("body is not JSON: {e}")))?;
    Ok(Item {
        version,
        body,
        expires_at: row.get(4).map_err(backend)?,
        gsi_pk: row.get(5).map_err(backend)?,
        gsi_sk: row.get(6).map_err(backend)?,
        pk,
        sk,
    })
}

fn collect_items(mut rows: rusqlite::Rows<'_>) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        items.push(row_to_item(row)?);
    }
    Ok(items)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM items
                 WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let mut rows = stmt.query(params![pk, sk, now]).map_err(backend)?;
            match rows.next().map_err(backend)? {
                Some(row) => row_to_item(row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn insert(&self, item: &Item, now: i64) -> Result<bool, StoreError> {
        let body = body_text(item)?;
        let item = item.clone();
        self.with_conn(move |conn| insert_row(conn, &item, &body, now))
            .await
    }

    async fn update(&self, item: &Item) -> Result<u64, StoreError> {
        let body = body_text(item)?;
        let item = item.clone();
        self.with_conn(move |conn| update_row(conn, &item, &body))
            .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str, now: i64) -> Result<Vec<Item>, StoreError> {
        let pk = pk.to_owned();
        let prefix = sk_prefix.to_owned();
        let upper = prefix_upper_bound(&prefix);
        self.with_conn(move |conn| {
            // A key range rather than LIKE/GLOB: sort keys contain `#`, `_` and `%`.
            let sql = format!(
                "SELECT {COLUMNS} FROM items
                 WHERE pk = ?1 AND sk >= ?2 AND (?3 IS NULL OR sk < ?3)
                   AND (expires_at IS NULL OR expires_at > ?4)
                 ORDER BY sk ASC"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query(params![pk, prefix, upper, now])
                .map_err(backend)?;
            collect_items(rows)
        })
        .await
    }

    async fn query_index(
        &self,
        gsi_pk: &str,
        gsi_sk_max: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Item>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let gsi_pk = gsi_pk.to_owned();
        let gsi_sk_max = gsi_sk_max.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            // Like a DynamoDB index, only items with both index keys are in it.
            let sql = format!(
                "SELECT {COLUMNS} FROM items
                 WHERE gsi_pk = ?1 AND gsi_sk IS NOT NULL AND (?2 IS NULL OR gsi_sk <= ?2)
                   AND (expires_at IS NULL OR expires_at > ?3)
                 ORDER BY gsi_sk ASC, pk ASC, sk ASC
                 LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query(params![gsi_pk, gsi_sk_max, now, limit])
                .map_err(backend)?;
            collect_items(rows)
        })
        .await
    }

    async fn delete(&self, pk: &str, sk: &str, version: u64) -> Result<(), StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_conn(move |conn| delete_row(conn, &pk, &sk, version))
            .await
    }

    async fn commit(&self, writes: &[Write], now: i64) -> Result<Vec<u64>, StoreError> {
        check_commit(writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let bodies = writes
            .iter()
            .map(|w| match w {
                Write::Insert(i) | Write::Update(i) => body_text(i),
                Write::Delete { .. } => Ok(String::new()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let writes = writes.to_vec();
        self.with_conn(move |conn| {
            // Dropped without `commit` on any error: rolled back, nothing written.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut versions = Vec::with_capacity(writes.len());
            for (w, body) in writes.iter().zip(&bodies) {
                versions.push(match w {
                    Write::Insert(item) => {
                        if !insert_row(&tx, item, body, now)? {
                            return Err(conflict(&item.pk, &item.sk));
                        }
                        1
                    }
                    Write::Update(item) => update_row(&tx, item, body)?,
                    Write::Delete { pk, sk, version } => {
                        delete_row(&tx, pk, sk, *version)?;
                        0
                    }
                });
            }
            tx.commit().map_err(backend)?;
            Ok(versions)
        })
        .await
    }
}

/// The compare-and-swap update of [`Store::update`] on `conn` (or inside a transaction on it).
fn update_row(conn: &Connection, item: &Item, body: &str) -> Result<u64, StoreError> {
    // A version that SQLite cannot even hold cannot be the stored one.
    let expected = i64::try_from(item.version).map_err(|_| conflict(&item.pk, &item.sk))?;
    let next = expected.checked_add(1).ok_or_else(|| {
        StoreError::Backend(format!("version of {}/{} overflows", item.pk, item.sk))
    })?;
    let mut stmt = conn
        .prepare_cached(
            "UPDATE items
             SET version = ?1, body = ?2, expires_at = ?3, gsi_pk = ?4, gsi_sk = ?5
             WHERE pk = ?6 AND sk = ?7 AND version = ?8",
        )
        .map_err(backend)?;
    let changed = stmt
        .execute(params![
            next,
            body,
            item.expires_at,
            item.gsi_pk,
            item.gsi_sk,
            item.pk,
            item.sk,
            expected
        ])
        .map_err(backend)?;
    if changed == 1 {
        // `next` is positive: it is `expected + 1` with `expected` non-negative.
        Ok(item.version + 1)
    } else {
        Err(conflict(&item.pk, &item.sk))
    }
}

/// The conditional delete of [`Store::delete`] on `conn` (or inside a transaction on it).
fn delete_row(conn: &Connection, pk: &str, sk: &str, version: u64) -> Result<(), StoreError> {
    let Ok(version) = i64::try_from(version) else {
        return Err(conflict(pk, sk));
    };
    let changed = conn
        .prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2 AND version = ?3")
        .map_err(backend)?
        .execute(params![pk, sk, version])
        .map_err(backend)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(conflict(pk, sk))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn upper_bound_increments_last_char() {
        assert_eq!(prefix_upper_bound("ORDER#").as_deref(), Some("ORDER$"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(
            prefix_upper_bound("ab\u{10FFFF}").as_deref(),
            Some("ac"),
            "trailing maximal chars are dropped"
        );
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}\u{10FFFF}"), None);
    }
}
