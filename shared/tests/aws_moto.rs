//! Runs the store and queue conformance suites against the AWS backends ([`DynamoStore`],
//! [`SqsQueue`]) on moto server, plus the AWS-only behaviour: the 400 KB item limit, TTL filtering
//! on a server that never expires anything, redrive into the dead-letter queue, bad bodies.
//!
//! Needs a running moto (`moto_server -H 127.0.0.1 -p 5055`) and
//! `PAYBRIDGE_TEST_AWS_ENDPOINT=http://127.0.0.1:5055`. Without that variable each test prints
//! a notice and passes, except under CI (`CI=true`), where it fails. Every test works on its own
//! table or queue (named from pid, counter and clock), so tests run in parallel on one moto.

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use paybridge_core::aws::{AwsEnv, Backends, WarmUp, warm_up};
use paybridge_core::queue::sqs::SqsQueue;
use paybridge_core::queue::{Job, Queue, QueueError, conformance as queue_conformance};
use paybridge_core::store::dynamo::DynamoStore;
use paybridge_core::store::{Item, Store, StoreError, conformance as store_conformance};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ENDPOINT_VAR: &str = "PAYBRIDGE_TEST_AWS_ENDPOINT";

/// The AWS SDK config for moto, or `None` (after a notice) when the endpoint is not configured
/// outside CI. Panics under CI without an endpoint.
async fn moto(test: &str) -> Option<SdkConfig> {
    let endpoint = match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(
                !ci,
                "{test}: {ENDPOINT_VAR} is not set, and under CI the moto tests must run: start \
                 `moto_server -H 127.0.0.1 -p 5055` and set {ENDPOINT_VAR}=http://127.0.0.1:5055"
            );
            eprintln!(
                "notice: {test} skipped: set {ENDPOINT_VAR} (e.g. http://127.0.0.1:5055, with \
                 `moto_server -H 127.0.0.1 -p 5055` running) to run the AWS backend tests"
            );
            return None;
        }
    };
    Some(
        paybridge_core::aws::sdk_defaults()
            .region(Region::new("eu-central-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "paybridge-moto-tests",
            ))
            .load()
            .await,
    )
}

/// A table or queue name no other test (of this or any other run) uses.
fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("pbt-{kind}-{}-{n}-{nanos:x}", std::process::id())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A fresh table and a store on it.
async fn fresh_store(config: &SdkConfig) -> (aws_sdk_dynamodb::Client, DynamoStore, String) {
    let client = aws_sdk_dynamodb::Client::new(config);
    let table = unique_name("table");
    DynamoStore::create_table(&client, &table)
        .await
        .expect("create table");
    let store = DynamoStore::new(client.clone(), table.clone());
    (client, store, table)
}

/// A fresh queue (with its dead-letter queue) and its client.
async fn fresh_queue(
    config: &SdkConfig,
    max_receives: u32,
) -> (aws_sdk_sqs::Client, SqsQueue, String) {
    let client = aws_sdk_sqs::Client::new(config);
    let (queue, dlq_url) = SqsQueue::create(&client, &unique_name("q"), max_receives)
        .await
        .expect("create queue");
    (client, queue, dlq_url)
}

/// Receives from `queue` until one delivery arrives; panics after five seconds.
async fn receive_one(
    queue: &dyn Queue,
    visibility: Duration,
    what: &str,
) -> paybridge_core::queue::Delivery {
    let started = Instant::now();
    loop {
        let mut got = queue.receive(1, visibility, 0).await.expect(what);
        if let Some(d) = got.pop() {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: nothing arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conformance_dynamo() {
    let Some(config) = moto("store_conformance_dynamo").await else {
        return;
    };
    let (client, store, table) = fresh_store(&config).await;
    store_conformance::run_all(&store).await;
    // The suite only adds fresh keys: it passes again on the same, now non-empty table.
    store_conformance::run_all(&store).await;
    // create_table is idempotent.
    DynamoStore::create_table(&client, &table)
        .await
        .expect("create the existing table again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_concurrency_dynamo() {
    let Some(config) = moto("store_concurrency_dynamo").await else {
        return;
    };
    let (_client, store, _table) = fresh_store(&config).await;
    let store: Arc<dyn Store> = Arc::new(store);
    store_conformance::run_concurrency(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_rejects_oversize_item() {
    let Some(config) = moto("dynamo_rejects_oversize_item").await else {
        return;
    };
    let (_client, store, _table) = fresh_store(&config).await;
    let now = now_secs();

    let oversize = Item::new("P", "BIG", json!({ "blob": "x".repeat(410 * 1024) }));
    match store.insert(&oversize, now).await {
        Err(StoreError::Backend(message)) => assert!(
            message.contains("400 KB") && message.contains("P/BIG"),
            "the error names the item and the limit: {message}"
        ),
        other => panic!("expected Backend for a 410 KB item, got {other:?}"),
    }
    assert_eq!(
        store.get("P", "BIG", now).await.unwrap(),
        None,
        "nothing was written"
    );

    // Just below the limit is fine, and growing it past the limit by update is refused too.
    let large = Item::new("P", "LARGE", json!({ "blob": "y".repeat(390 * 1024) }));
    assert!(store.insert(&large, now).await.unwrap());
    let stored = store
        .get("P", "LARGE", now)
        .await
        .unwrap()
        .expect("large item");
    assert_eq!(
        stored,
        Item {
            version: 1,
            ..large.clone()
        }
    );
    let grown = Item {
        body: json!({ "blob": "z".repeat(401 * 1024) }),
        ..stored.clone()
    };
    assert!(matches!(
        store.update(&grown).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(
        store.get("P", "LARGE", now).await.unwrap(),
        Some(stored),
        "a refused update changes nothing"
    );

    // Multi-byte text counts in UTF-8 bytes: 140 K three-byte chars are 420 KB.
    let wide = Item::new("P", "WIDE", json!("€".repeat(140 * 1024)));
    assert!(matches!(
        store.insert(&wide, now).await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_ttl_filtered_even_though_moto_never_expires() {
    let Some(config) = moto("dynamo_ttl_filtered_even_though_moto_never_expires").await else {
        return;
    };
    let (client, store, table) = fresh_store(&config).await;
    let now = now_secs();

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("describe TTL");
    let description = ttl.time_to_live_description().expect("TTL description");
    assert_eq!(
        description.attribute_name(),
        Some("expires_at"),
        "TTL is on expires_at"
    );

    let mut dead = Item::new("P", "DEAD", json!({"who": "dead"}));
    dead.expires_at = Some(1_000); // 1970: any real TTL would have removed it long ago
    dead.gsi_pk = Some("G".to_owned());
    dead.gsi_sk = Some("0".to_owned());
    assert!(store.insert(&dead, 900).await.unwrap());
    let mut alive = Item::new("P", "LIVE", json!({"who": "live"}));
    alive.gsi_pk = Some("G".to_owned());
    alive.gsi_sk = Some("1".to_owned());
    assert!(store.insert(&alive, now).await.unwrap());

    // The expired item is physically still there...
    let raw = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("P".to_owned()))
        .key("sk", AttributeValue::S("DEAD".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("raw get");
    assert!(
        raw.item().is_some(),
        "moto keeps expired items (TTL never runs)"
    );

    // ...but every read treats it as absent, and the limit counts only live items.
    assert_eq!(store.get("P", "DEAD", now).await.unwrap(), None);
    assert!(
        store.get("P", "DEAD", 999).await.unwrap().is_some(),
        "alive before expiry"
    );
    let queried = store.query("P", "", now).await.unwrap();
    assert_eq!(
        queried.iter().map(|i| i.sk.as_str()).collect::<Vec<_>>(),
        ["LIVE"]
    );
    let indexed = store.query_index("G", None, 1, now).await.unwrap();
    assert_eq!(
        indexed.iter().map(|i| i.sk.as_str()).collect::<Vec<_>>(),
        ["LIVE"]
    );

    // An expired key can be taken over.
    let reborn = Item::new("P", "DEAD", json!({"who": "reborn"}));
    assert!(store.insert(&reborn, now).await.unwrap());
    assert_eq!(
        store.get("P", "DEAD", now).await.unwrap(),
        Some(Item {
            version: 1,
            ..reborn
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_index_paging_ties_and_unstorable_keys() {
    let Some(config) = moto("dynamo_index_paging_ties_and_unstorable_keys").await else {
        return;
    };
    let (_client, store, _table) = fresh_store(&config).await;
    let now = now_secs();

    // 30 expired entries sort before the live ones: the limit must page past all of them.
    for n in 0..30 {
        let mut it = Item::new(format!("E{n:02}"), "X", json!({}));
        it.gsi_pk = Some("G".to_owned());
        it.gsi_sk = Some(format!("0#{n:02}"));
        it.expires_at = Some(now - 1);
        assert!(store.insert(&it, now - 10).await.unwrap());
    }
    // Live entries tying on gsi_sk come back by table key, like SQLite's order.
    for pk in ["Lc", "La", "Lb"] {
        let mut it = Item::new(pk, "X", json!({}));
        it.gsi_pk = Some("G".to_owned());
        it.gsi_sk = Some("1".to_owned());
        assert!(store.insert(&it, now).await.unwrap());
    }
    let mut last = Item::new("Z", "X", json!({}));
    last.gsi_pk = Some("G".to_owned());
    last.gsi_sk = Some("2".to_owned());
    assert!(store.insert(&last, now).await.unwrap());

    let pks = |items: Vec<Item>| items.into_iter().map(|i| i.pk).collect::<Vec<_>>();
    assert_eq!(
        pks(store.query_index("G", None, 2, now).await.unwrap()),
        ["La", "Lb"]
    );
    assert_eq!(
        pks(store.query_index("G", None, 10, now).await.unwrap()),
        ["La", "Lb", "Lc", "Z"]
    );
    assert_eq!(
        pks(store.query_index("G", Some("1"), 10, now).await.unwrap()),
        ["La", "Lb", "Lc"]
    );
    let long_bound = "1".repeat(2000);
    assert_eq!(
        pks(store
            .query_index("G", Some(&long_bound), 10, now)
            .await
            .unwrap()),
        ["La", "Lb", "Lc"],
        "a bound longer than any key still compares whole strings"
    );
    assert!(
        store
            .query_index("G", Some(""), 10, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .query_index("", None, 10, now)
            .await
            .unwrap()
            .is_empty()
    );

    // Keys DynamoDB cannot hold: reads find nothing, writes say why.
    assert_eq!(store.get("", "X", now).await.unwrap(), None);
    assert!(store.query("", "", now).await.unwrap().is_empty());
    assert!(matches!(
        store.insert(&Item::new("P", "", json!({})), now).await,
        Err(StoreError::Backend(_))
    ));
    let mut empty_index = Item::new("P", "S", json!({}));
    empty_index.gsi_pk = Some(String::new());
    match store.insert(&empty_index, now).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("gsi_pk"), "{m}"),
        other => panic!("expected Backend for an empty index key, got {other:?}"),
    }
    let too_long = Item {
        version: 1,
        ..Item::new("P", "s".repeat(1025), json!({}))
    };
    assert!(store.update(&too_long).await.unwrap_err().is_conflict());
    assert!(store.delete("P", "", 1).await.unwrap_err().is_conflict());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_corrupt_item_and_backend_errors() {
    let Some(config) = moto("dynamo_corrupt_item_and_backend_errors").await else {
        return;
    };
    let (client, store, table) = fresh_store(&config).await;
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("P".to_owned()))
        .item("sk", AttributeValue::S("S".to_owned()))
        .item("version", AttributeValue::N("1".to_owned()))
        .item("body", AttributeValue::S("not json".to_owned()))
        .send()
        .await
        .expect("raw put");
    match store.get("P", "S", now_secs()).await {
        Err(StoreError::Corrupt { pk, sk, .. }) => {
            assert_eq!((pk.as_str(), sk.as_str()), ("P", "S"))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.query("P", "", now_secs()).await,
        Err(StoreError::Corrupt { .. })
    ));

    // A missing table is a short Backend error naming the operation, without credentials.
    let missing = DynamoStore::new(client.clone(), unique_name("missing"));
    match missing.get("P", "S", 0).await {
        Err(StoreError::Backend(m)) => {
            assert!(
                m.starts_with("DynamoDB GetItem failed: ResourceNotFoundException"),
                "{m}"
            );
            assert!(!m.contains("test"), "no credentials in errors: {m}");
        }
        other => panic!("expected Backend, got {other:?}"),
    }
}

/// Turns the HTTP status of the next response into 500 once armed, as if the answer to a
/// request that the server did process had been lost: the SDK then retries the request.
#[derive(Debug, Default)]
struct LoseNextResponse {
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl Intercept for LoseNextResponse {
    fn name(&self) -> &'static str {
        "LoseNextResponse"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            *context.response_mut().status_mut() = 500u16.try_into()?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_conditional_writes_survive_sdk_retries() {
    let Some(config) = moto("dynamo_conditional_writes_survive_sdk_retries").await else {
        return;
    };
    let (_client, _store, table) = fresh_store(&config).await;
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky_client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(LoseNextResponse {
                armed: Arc::clone(&armed),
            })
            .build(),
    );
    let store = DynamoStore::new(flaky_client, table);
    let now = now_secs();
    let item = Item::new("P", "S", json!({"n": 1}));

    // The first PutItem succeeds on the server, its answer is lost, the retry fails its own
    // condition: the write token shows it was this call's write.
    armed.store(true, Ordering::SeqCst);
    assert!(
        store.insert(&item, now).await.unwrap(),
        "a retried insert that had succeeded is reported as inserted"
    );
    assert!(!armed.load(Ordering::SeqCst), "the response was lost");
    assert!(
        !store.insert(&item, now).await.unwrap(),
        "another insert still loses"
    );

    armed.store(true, Ordering::SeqCst);
    let next = Item {
        version: 1,
        body: json!({"n": 2}),
        ..item.clone()
    };
    assert_eq!(
        store.update(&next).await.unwrap(),
        2,
        "a retried update that had succeeded is reported as done"
    );
    assert!(!armed.load(Ordering::SeqCst));
    assert!(
        store.update(&next).await.unwrap_err().is_conflict(),
        "a second update from the same version still conflicts"
    );

    // Known limit: a delete leaves no token behind, so its successful-then-retried attempt
    // reports Conflict (the item is gone all the same).
    armed.store(true, Ordering::SeqCst);
    assert!(store.delete("P", "S", 2).await.unwrap_err().is_conflict());
    assert_eq!(store.get("P", "S", now).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// SQS

/// The queue conformance suite on SQS, without the stale-receipt checks SQS cannot meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_conformance_sqs() {
    let Some(config) = moto("queue_conformance_sqs").await else {
        return;
    };
    let (_client, queue, _dlq) = fresh_queue(&config, 5).await;
    // SQS cannot refuse outdated receipts (see QueueCaps); everything else is the same suite.
    queue_conformance::run_all_with(
        &queue,
        queue_conformance::QueueCaps {
            rejects_stale_receipts: false,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redrive_sqs() {
    let Some(config) = moto("queue_redrive_sqs").await else {
        return;
    };
    for max_receives in [3, 1] {
        let (client, queue, dlq_url) = fresh_queue(&config, max_receives).await;
        let job = queue_conformance::run_redrive(&queue, max_receives).await;
        let dlq = SqsQueue::new(client, dlq_url);
        let dead = receive_one(&dlq, Duration::from_secs(30), "receive from the DLQ").await;
        assert_eq!(
            dead.job, job,
            "the redriven job arrives intact in the dead-letter queue"
        );
        assert_eq!(dlq.depth().await.unwrap(), 1, "exactly one dead letter");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_bad_body_is_skipped_and_redriven() {
    let Some(config) = moto("sqs_bad_body_is_skipped_and_redriven").await else {
        return;
    };
    let (client, queue, dlq_url) = fresh_queue(&config, 1).await;
    client
        .send_message()
        .queue_url(queue.queue_url())
        .message_body("{\"job\":\"no_such_job\"}")
        .send()
        .await
        .expect("raw send");
    let good = Job::Evaluate {
        order_pk: "ORDER#1".to_owned(),
    };
    queue.send(&good, Duration::ZERO, 0).await.unwrap();

    // The bad message is skipped but stays (hidden) in the queue.
    let started = Instant::now();
    let mut delivered = Vec::new();
    while delivered.is_empty() {
        delivered = queue.receive(10, Duration::from_secs(1), 0).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the good job never arrived"
        );
    }
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].job, good);
    queue.ack(&delivered[0].receipt).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap(),
        1,
        "the bad message was not deleted"
    );

    // After its visibility timeout the next receive redrives it (maxReceiveCount 1).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        queue
            .receive(10, Duration::from_secs(30), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
    let raw = client
        .receive_message()
        .queue_url(&dlq_url)
        .send()
        .await
        .expect("raw receive from the DLQ");
    let bodies: Vec<&str> = raw.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        ["{\"job\":\"no_such_job\"}"],
        "the bad message is in the DLQ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_receipts_delays_and_limits() {
    let Some(config) = moto("sqs_receipts_delays_and_limits").await else {
        return;
    };
    let (_client, queue, _dlq) = fresh_queue(&config, 5).await;
    // Receipts SQS never issued are stale, not backend failures.
    assert!(matches!(
        queue.ack("no-such-receipt").await,
        Err(QueueError::StaleReceipt)
    ));
    assert!(matches!(
        queue
            .retry_later("no-such-receipt", Duration::ZERO, 0)
            .await,
        Err(QueueError::StaleReceipt)
    ));
    assert!(matches!(queue.ack("").await, Err(QueueError::StaleReceipt)));

    // A delay beyond SQS's 15 minutes is sent capped, not refused.
    let job = Job::apply_event("T#acme#PAY#1".to_owned(), "EV#memory#1".to_owned());
    queue
        .send(&job, Duration::from_secs(3 * 3_600), 0)
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1, "delayed message counts");
    assert!(
        queue
            .receive(10, Duration::from_secs(30), 0)
            .await
            .unwrap()
            .is_empty()
    );

    // receive(0) asks nothing; more than ten is served in batches of at most ten.
    assert!(
        queue
            .receive(0, Duration::ZERO, 0)
            .await
            .unwrap()
            .is_empty()
    );
    for n in 0..12 {
        let job = Job::Evaluate {
            order_pk: format!("ORDER#{n}"),
        };
        queue.send(&job, Duration::ZERO, 0).await.unwrap();
    }
    let got = queue.receive(50, Duration::from_secs(30), 0).await.unwrap();
    assert!(!got.is_empty() && got.len() <= 10, "got {}", got.len());

    // A missing queue is a Backend error naming the operation.
    let missing = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{}-missing", queue.queue_url()),
    );
    match missing.depth().await {
        Err(QueueError::Backend(m)) => {
            assert!(m.starts_with("SQS GetQueueAttributes failed"), "{m}")
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(matches!(
        SqsQueue::create(&aws_sdk_sqs::Client::new(&config), "x", 0).await,
        Err(QueueError::Backend(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// The INIT-phase warm-up (architecture.md §6b)

/// The warm-up read reaches DynamoDB when the table exists, and a failing warm-up (no such
/// table, nothing listening) never fails the INIT: `Backends::connect` still returns, within
/// the warm-up's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_opens_the_connection_and_never_fails_init() {
    let Some(config) = moto("warm_up_opens_the_connection_and_never_fails_init").await else {
        return;
    };
    let (client, store, table) = fresh_store(&config).await;
    assert_eq!(warm_up(&store).await, WarmUp::Done);
    let missing = DynamoStore::new(client, format!("{table}-missing"));
    assert!(
        matches!(warm_up(&missing).await, WarmUp::Failed(_)),
        "a missing table is a failed warm-up"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("paybridge.toml");
    std::fs::write(
        &config_path,
        "[tenant]\nid = \"warm\"\nquiet_hours = \"off\"\n",
    )
    .expect("config");
    let env = |table: String| AwsEnv {
        config_path: config_path.clone(),
        table,
        queue_url: "http://127.0.0.1:9/000000000000/unused".into(),
    };
    Backends::connect(&env(table.clone()), &config)
        .await
        .expect("backends on an existing table");
    Backends::connect(&env(format!("{table}-missing")), &config)
        .await
        .expect("a failed warm-up does not fail the INIT");
    let unreachable = config
        .to_builder()
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let started = Instant::now();
    let backends = Backends::connect(&env(table), &unreachable)
        .await
        .expect("an unreachable DynamoDB does not fail the INIT");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the warm-up is bounded: {:?}",
        started.elapsed()
    );
    assert_ne!(warm_up(backends.store.as_ref()).await, WarmUp::Done);
}
