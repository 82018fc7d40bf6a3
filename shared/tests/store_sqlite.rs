//! Runs the store and queue conformance suites against the SQLite backends (file and in-memory),
//! plus the SQLite-only behaviour: persistence across reopen, a shared database file, the
//! dead-letter table, the simulated clock and corrupt rows.

use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::queue::{Job, Queue, QueueError, conformance as queue_conformance};
use paybridge_core::store::sqlite::SqliteStore;
use paybridge_core::store::{Item, Store, StoreError, conformance as store_conformance};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paybridge.db");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conformance_sqlite_file() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    store_conformance::run_all(&store).await;
    // The suite only adds fresh keys: it passes again on the same, now non-empty table.
    store_conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conformance_sqlite_memory() {
    let store = SqliteStore::open_in_memory().unwrap();
    store_conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_concurrency_sqlite() {
    let (_dir, path) = temp_db();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    store_conformance::run_concurrency(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_concurrency_sqlite_two_connections() {
    // Two stores on one file: conditional writes stay atomic across connections.
    let (_dir, path) = temp_db();
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    let now = 1_000;
    assert!(
        a.insert(&Item::new("P", "S", json!({"n": 0})), now)
            .await
            .unwrap()
    );
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store: Arc<dyn Store> = if writer % 2 == 0 {
            Arc::new(a.clone())
        } else {
            Arc::new(b.clone())
        };
        tasks.push(tokio::spawn(async move {
            let item = Item {
                version: 1,
                ..Item::new("P", "S", json!({ "writer": writer }))
            };
            store.update(&item).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, 2);
                wins += 1;
            }
            Err(e) => assert!(e.is_conflict(), "unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_conformance_sqlite() {
    let queue = SqliteQueue::open_in_memory(5).unwrap();
    queue_conformance::run_all(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_conformance_sqlite_file_shared_with_store() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let queue = SqliteQueue::open(&path, 5).unwrap();
    tokio::join!(
        store_conformance::run_all(&store),
        queue_conformance::run_all(&queue)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redrive_sqlite() {
    let queue = SqliteQueue::open_in_memory(3).unwrap();
    let job = queue_conformance::run_redrive(&queue, 3).await;
    assert_eq!(queue.dead_letters().await.unwrap(), vec![job]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redrive_sqlite_max_one() {
    let queue = SqliteQueue::open_in_memory(1).unwrap();
    let job = queue_conformance::run_redrive(&queue, 1).await;
    assert_eq!(queue.dead_letters().await.unwrap(), vec![job]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_sqlite_two_connections_deliver_once() {
    // Receivers on two connections to one file never get the same message at the same time.
    let (_dir, path) = temp_db();
    let a = SqliteQueue::open(&path, 5).unwrap();
    let b = SqliteQueue::open(&path, 5).unwrap();
    for n in 0..60 {
        a.send(&evaluate(n), Duration::ZERO, 0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let queue = if worker % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let got = queue.receive(3, Duration::from_secs(60), 1).await.unwrap();
                if got.is_empty() {
                    return ids;
                }
                for d in got {
                    assert_eq!(d.receive_count, 1);
                    ids.push(d.message_id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, 60, "every message delivered");
    assert_eq!(all.len(), 60, "no message delivered twice");
    assert_eq!(b.depth().await.unwrap(), 60, "all in flight");
}

fn evaluate(n: u32) -> Job {
    Job::Evaluate {
        order_pk: format!("ORDER#{n}"),
    }
}

#[tokio::test]
async fn queue_sqlite_simulated_clock() {
    let queue = SqliteQueue::open_in_memory(2).unwrap();
    let vis = Duration::from_secs(10);
    let t = 1_000_000;
    // Order: by visible_at, then by send order.
    queue
        .send(&evaluate(1), Duration::from_millis(500), t)
        .await
        .unwrap();
    queue.send(&evaluate(2), Duration::ZERO, t).await.unwrap();
    queue.send(&evaluate(3), Duration::ZERO, t).await.unwrap();
    let got = queue.receive(10, vis, t).await.unwrap();
    assert_eq!(
        got.iter().map(|d| d.job.clone()).collect::<Vec<_>>(),
        vec![evaluate(2), evaluate(3)]
    );
    assert!(queue.receive(10, vis, t + 499).await.unwrap().is_empty());
    let got1 = queue.receive(10, vis, t + 500).await.unwrap();
    assert_eq!(got1.len(), 1);
    assert_eq!(got1[0].job, evaluate(1));

    // Visibility ends exactly at receive time + visibility.
    assert!(queue.receive(10, vis, t + 9_999).await.unwrap().is_empty());
    let again = queue.receive(10, vis, t + 10_000).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.receive_count == 2));
    assert!(matches!(
        queue.ack(&got[0].receipt).await,
        Err(QueueError::StaleReceipt)
    ));

    // At t + 20.5 s all three are due: 1 (its second receive) is delivered, 2 and 3 would be
    // received a third time and are dead-lettered instead, in the same call.
    let third = queue.receive(10, vis, t + 20_500).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].job, evaluate(1));
    assert_eq!(third[0].receive_count, 2);
    assert_eq!(queue.depth().await.unwrap(), 1);
    assert_eq!(
        queue.dead_letters().await.unwrap(),
        vec![evaluate(2), evaluate(3)]
    );

    // A receipt dies with its message: ack twice is stale the second time.
    queue.ack(&third[0].receipt).await.unwrap();
    assert!(matches!(
        queue.ack(&third[0].receipt).await,
        Err(QueueError::StaleReceipt)
    ));
    assert!(matches!(
        queue.ack("no-such-receipt").await,
        Err(QueueError::StaleReceipt)
    ));
    assert_eq!(queue.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn queue_sqlite_zero_visibility_delivers_once_per_receive() {
    let queue = SqliteQueue::open_in_memory(5).unwrap();
    queue.send(&evaluate(1), Duration::ZERO, 0).await.unwrap();
    let got = queue.receive(10, Duration::ZERO, 0).await.unwrap();
    assert_eq!(got.len(), 1, "one message, one delivery per receive");
    let got = queue.receive(10, Duration::ZERO, 0).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 2);
    assert!(
        queue
            .receive(0, Duration::ZERO, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn queue_sqlite_rejects_zero_max_receives() {
    assert!(matches!(
        SqliteQueue::open_in_memory(0),
        Err(QueueError::Backend(_))
    ));
}

#[tokio::test]
async fn queue_sqlite_bad_body_is_dead_lettered() {
    let (_dir, path) = temp_db();
    let queue = SqliteQueue::open(&path, 5).unwrap();
    queue.send(&evaluate(1), Duration::ZERO, 0).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO queue_messages (body, visible_at, receive_count, receipt, sent_at)
             VALUES ('{\"job\":\"no_such_job\"}', 0, 0, NULL, 0)",
            [],
        )
        .unwrap();
    }
    let got = queue.receive(10, Duration::from_secs(1), 0).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, evaluate(1));
    assert_eq!(
        queue.depth().await.unwrap(),
        1,
        "the bad message left the queue"
    );
    assert!(matches!(
        queue.dead_letters().await,
        Err(QueueError::BadMessage(_))
    ));
}

#[tokio::test]
async fn sqlite_data_persists_across_reopen() {
    let (_dir, path) = temp_db();
    let mut item = Item::new(
        "ORDER#1",
        "META",
        json!({"amount": "12.34", "name": "Müller"}),
    );
    item.gsi_pk = Some("PROBLEM".to_owned());
    item.gsi_sk = Some("2026-01-01".to_owned());
    {
        let store = SqliteStore::open(&path).unwrap();
        let queue = SqliteQueue::open(&path, 3).unwrap();
        assert!(store.insert(&item, 100).await.unwrap());
        item.version = 1;
        assert_eq!(store.update(&item).await.unwrap(), 2);
        queue.send(&evaluate(7), Duration::ZERO, 100).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let queue = SqliteQueue::open(&path, 3).unwrap();
    let got = store.get("ORDER#1", "META", 100).await.unwrap().unwrap();
    assert_eq!(
        got,
        Item {
            version: 2,
            ..item.clone()
        }
    );
    let indexed = store.query_index("PROBLEM", None, 10, 100).await.unwrap();
    assert_eq!(indexed, vec![got]);
    assert_eq!(queue.depth().await.unwrap(), 1);
    let d = queue
        .receive(10, Duration::from_secs(5), 100)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].job, evaluate(7));

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_store_reports_corrupt_body() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO items (pk, sk, version, body) VALUES ('P', 'S', 1, 'not json')",
            [],
        )
        .unwrap();
    }
    match store.get("P", "S", 0).await {
        Err(StoreError::Corrupt { pk, sk, .. }) => {
            assert_eq!((pk.as_str(), sk.as_str()), ("P", "S"))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.query("P", "", 0).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn sqlite_store_edge_cases() {
    let store = SqliteStore::open_in_memory().unwrap();
    // Versions beyond what SQLite holds cannot match anything.
    let huge = Item {
        version: u64::MAX,
        ..Item::new("P", "S", json!({}))
    };
    assert!(store.update(&huge).await.unwrap_err().is_conflict());
    assert!(
        store
            .delete("P", "S", u64::MAX)
            .await
            .unwrap_err()
            .is_conflict()
    );
    // limit 0 is an empty answer, not an error.
    let mut indexed = Item::new("P", "S", json!({}));
    indexed.gsi_pk = Some("G".to_owned());
    indexed.gsi_sk = Some("1".to_owned());
    assert!(store.insert(&indexed, 0).await.unwrap());
    assert!(store.query_index("G", None, 0, 0).await.unwrap().is_empty());
    assert_eq!(
        store
            .query_index("G", None, usize::MAX, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    // Prefixes ending in the largest code point still match exactly.
    assert!(
        store
            .insert(&Item::new("P", "a\u{10FFFF}b", json!({})), 0)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert(&Item::new("P", "a\u{10FFFF}", json!({})), 0)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert(&Item::new("P", "b", json!({})), 0)
            .await
            .unwrap()
    );
    let got = store.query("P", "a\u{10FFFF}", 0).await.unwrap();
    let sks: Vec<&str> = got.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(sks, ["a\u{10FFFF}", "a\u{10FFFF}b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_sharing_the_store_commits_an_item_and_its_job_together() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let queue = SqliteQueue::sharing(&store, 5).unwrap();
    let item = Item::new("T#t#PAY#p1", "EV#memory#a", json!({"n": 1}));
    let job = Job::apply_event("T#t#PAY#p1".into(), "EV#memory#a".into());

    assert!(matches!(
        queue.insert_and_send(&item, 0, &job, 0).await,
        Some(Ok(true))
    ));
    // A repeat inserts nothing and queues nothing.
    assert!(matches!(
        queue.insert_and_send(&item, 0, &job, 0).await,
        Some(Ok(false))
    ));
    assert_eq!(queue.depth().await.unwrap(), 1);
    let stored = store.get("T#t#PAY#p1", "EV#memory#a", 0).await.unwrap();
    assert_eq!(stored.map(|i| i.body), Some(json!({"n": 1})));
    let got = queue.receive(10, Duration::from_secs(30), 0).await.unwrap();
    assert_eq!(got.iter().map(|d| &d.job).collect::<Vec<_>>(), vec![&job]);

    // The data survive a reopen.
    drop((queue, store));
    let again = SqliteStore::open(&path).unwrap();
    assert!(
        again
            .get("T#t#PAY#p1", "EV#memory#a", 0)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_store_conformance_on_one_shared_connection() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let queue = SqliteQueue::sharing(&store, 5).unwrap();
    tokio::join!(
        store_conformance::run_all(&store),
        queue_conformance::run_all(&queue)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_its_own_leaves_insert_and_send_to_the_caller() {
    let (_dir, path) = temp_db();
    let queue = SqliteQueue::open(&path, 5).unwrap();
    let item = Item::new("pk", "sk", json!({}));
    let job = Job::Evaluate {
        order_pk: "pk".into(),
    };
    assert!(queue.insert_and_send(&item, 0, &job, 0).await.is_none());
    assert_eq!(queue.depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_wakes_a_waiting_worker() {
    // The worker of `serve` waits with `wait_for_work(idle)`; a visible send must end the
    // wait (not the day-long bound). The outer bound only turns a missing wake into a failure
    // instead of a hang.
    let queue = SqliteQueue::open_in_memory(5).unwrap();
    let waiter = {
        let q = queue.clone();
        tokio::spawn(async move { q.wait_for_work(Duration::from_secs(86_400)).await })
    };
    queue.send(&evaluate(1), Duration::ZERO, 0).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(600), waiter).await;
    assert!(woke.is_ok(), "the send woke the waiting worker");
    // A send made while nobody waited is not lost: the next wait returns at once.
    queue.send(&evaluate(2), Duration::ZERO, 0).await.unwrap();
    let next = tokio::time::timeout(
        Duration::from_secs(600),
        queue.wait_for_work(Duration::from_secs(86_400)),
    )
    .await;
    assert!(next.is_ok());
}
