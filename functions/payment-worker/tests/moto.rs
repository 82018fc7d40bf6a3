//! The payment worker's batch handling on the AWS backends: an app on [`DynamoStore`] and
//! [`SqsQueue`] (moto server), real SQS messages received from the queue turned into the SQS
//! event Lambda would deliver, one of them poisoned.
//!
//! A second test takes the path a Lambda cold start takes: [`Backends::connect`] on a
//! configuration file (what `Backends::from_env` does after reading the environment), then
//! [`LazyApp`] builds the app with its connectors and secrets.
//!
//! Needs a running moto (`moto_server -H 127.0.0.1 -p 5056`) and
//! `PAYBRIDGE_TEST_AWS_ENDPOINT=http://127.0.0.1:5056`. Without that variable the test prints a
//! notice and passes, except under CI (`CI=true`), where it fails. Table and queue names are
//! unique per test run, so it can share a moto with other tests.

use aws_config::{Region, SdkConfig};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use paybridge_core::app::{App, Settings};
use paybridge_core::aws::{AwsEnv, Backends, LazyApp, SecretsExtension};
use paybridge_core::config::Config;
use paybridge_core::erp::Erp;
use paybridge_core::erp::memory::{MemoryErp, line};
use paybridge_core::ledger::{OpStatus, OrderKey};
use paybridge_core::model::{
    ErpOrder, LineStatus, OrderStatus, PaymentMethod, PaymentState, PspPayment, PspTransaction,
    TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::queue::sqs::SqsQueue;
use paybridge_core::store::dynamo::DynamoStore;
use paybridge_core::store::repo::Repo;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const ENDPOINT_VAR: &str = "PAYBRIDGE_TEST_AWS_ENDPOINT";

/// The SDK configuration for moto; `None` (after a notice) without an endpoint, a failure
/// without one under CI.
async fn moto() -> Option<SdkConfig> {
    let endpoint = match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(
                !ci,
                "{ENDPOINT_VAR} is not set, and under CI the moto tests must run: start \
                 `moto_server -H 127.0.0.1 -p 5056` and set {ENDPOINT_VAR}=http://127.0.0.1:5056"
            );
            eprintln!(
                "notice: payment-worker moto test skipped: set {ENDPOINT_VAR} (e.g. \
                 http://127.0.0.1:5056, with `moto_server -H 127.0.0.1 -p 5056` running)"
            );
            return None;
        }
    };
    Some(
        paybridge_core::aws::sdk_defaults()
            .region(Region::new("eu-central-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .load()
            .await,
    )
}

fn unique(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("pbw-{kind}-{}-{nanos:x}", std::process::id())
}

const CONFIG: &str = r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "UNZER"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-known"
private_key = "plain:s-priv-test"
"#;

#[tokio::test]
async fn worker_batch_on_dynamodb_and_sqs_reports_only_the_poisoned_message() {
    let Some(sdk) = moto().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = unique("table");
    DynamoStore::create_table(&ddb, &table)
        .await
        .expect("create table");
    let (queue, _dlq_url) = SqsQueue::create(&sqs, &unique("jobs"), 3)
        .await
        .expect("create queue");
    let queue_url = queue.queue_url().to_string();

    let eur = |s: &str| Money::parse(s, Currency::EUR).expect("amount");
    let erp = MemoryErp::new();
    let psp = MemoryPsp::new();
    erp.upsert(ErpOrder {
        order_id: "1001".into(),
        mandant: "01".into(),
        shop_order_no: "S-1001".into(),
        psp_payment_id: Some("s-pay-1001".into()),
        payment_method: "UNZER".into(),
        status: OrderStatus::Hold,
        total: eur("100.00"),
        lines: vec![line("L1", LineStatus::Open, eur("100.00"))],
        shipping_lock: false,
        invoices: vec![],
        credit_notes: vec![],
        customer_key: None,
    });
    psp.put(PspPayment {
        payment_id: "s-pay-1001".into(),
        state: PaymentState::Pending,
        method: PaymentMethod::Card,
        currency: Currency::EUR,
        transactions: vec![PspTransaction {
            at: None,
            id: "s-aut-1".into(),
            kind: TxKind::Authorize,
            status: TxStatus::Success,
            amount: eur("100.00"),
            reference: None,
        }],
        bank_details: None,
        totals_only: false,
    });
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    erps.insert("main".into(), Arc::new(erp.clone()));
    let app = App {
        config: Arc::new(Config::parse(CONFIG, "test.toml").expect("config")),
        store: Arc::new(DynamoStore::new(ddb.clone(), table.clone())),
        queue: Arc::new(queue),
        erps,
        psp: Arc::new(psp),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "moto-test".into(),
    };

    // The poller plans the release and sends its job to SQS; someone sends garbage too.
    let report = app.poll_cycle(Utc::now()).await.expect("poll");
    assert_eq!(report.ops_planned, 1, "{report:?}");
    let poison_id = sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("{\"orderId\": 1001, \"action\": \"capture please\"}")
        .send()
        .await
        .expect("send poison")
        .message_id()
        .expect("message id")
        .to_string();

    let records = receive_as_lambda(&sqs, &queue_url, 2).await;
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).expect("SQS event");

    let response = payment_worker::handler(&app, LambdaEvent::new(event, Context::default()))
        .await
        .expect("handler");

    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [poison_id]);
    let ops = Repo::new(app.store.as_ref())
        .ops(&OrderKey::new("acme", "main", "1001"), Utc::now())
        .await
        .expect("ops");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, OpStatus::Done, "{:?}", ops[0]);
    assert_eq!(erp.order("1001").expect("order").status, OrderStatus::Open);
}

/// Receives `expected` messages as the event source mapping would and shapes them as the
/// records of the SQS event Lambda delivers.
async fn receive_as_lambda(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    expected: usize,
) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let attributes: HashMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:eu-central-1:123456789012:{}", queue_url.rsplit('/').next().unwrap_or_default()),
                "awsRegion": "eu-central-1"
            }));
        }
        if records.len() >= expected {
            break;
        }
    }
    assert_eq!(records.len(), expected, "{records:?}");
    records
}

#[tokio::test]
async fn the_cold_start_path_builds_an_app_that_polls_and_works_on_moto() {
    let Some(sdk) = moto().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = unique("table");
    DynamoStore::create_table(&ddb, &table)
        .await
        .expect("create table");
    let (queue, _dlq_url) = SqsQueue::create(&sqs, &unique("jobs"), 3)
        .await
        .expect("create queue");

    // A bundled configuration: memory ERP and PSP from a fixtures file, a file: secret, both
    // relative to the configuration's directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let eur = |s: &str| Money::parse(s, Currency::EUR).expect("amount");
    let fixtures = json!({
        "orders": [ErpOrder {
            order_id: "2001".into(),
            mandant: "01".into(),
            shop_order_no: "S-2001".into(),
            psp_payment_id: Some("s-pay-2001".into()),
            payment_method: "CARD".into(),
            status: OrderStatus::Hold,
            total: eur("42.00"),
            lines: vec![line("L1", LineStatus::Open, eur("42.00"))],
            shipping_lock: false,
            invoices: vec![],
            credit_notes: vec![],
            customer_key: None,
        }],
        "payments": [PspPayment {
            payment_id: "s-pay-2001".into(),
            state: PaymentState::Pending,
            method: PaymentMethod::Card,
            currency: Currency::EUR,
            transactions: vec![PspTransaction {
                at: None,
                id: "s-aut-1".into(),
                kind: TxKind::Authorize,
                status: TxStatus::Success,
                amount: eur("42.00"),
                reference: None,
            }],
            bank_details: None,
            totals_only: false,
        }],
    });
    std::fs::write(dir.path().join("orders.json"), fixtures.to_string()).expect("fixtures");
    std::fs::write(dir.path().join("key.txt"), "s-priv-from-file\n").expect("key");
    let config_path = dir.path().join("paybridge.toml");
    std::fs::write(
        &config_path,
        r#"
[tenant]
id = "coldstart"
quiet_hours = "off"

[[erp]]
id = "shop"
kind = "memory"
fixtures = "orders.json"

[[method]]
erp = "shop"
mandant = "01"
erp_method = "CARD"
psp = "memory"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-cold"
private_key = "file:key.txt"
"#,
    )
    .expect("config");
    let env = AwsEnv {
        config_path,
        table: table.clone(),
        queue_url: queue.queue_url().to_string(),
    };

    let backends = Backends::connect(&env, &sdk).await.expect("backends");
    // No ssm:/secretsmanager: reference: the extension (nothing listens there) is never asked.
    let extension = SecretsExtension::new("http://127.0.0.1:9/".parse().expect("url"), None)
        .expect("extension client");
    let lazy = LazyApp::new(backends, extension);
    let app = lazy.get().await.expect("app");
    assert!(
        Arc::ptr_eq(&app, &lazy.get().await.expect("app")),
        "built once"
    );

    let report = app.poll_cycle(Utc::now()).await.expect("poll");
    assert_eq!(report.orders_seen, 1, "{report:?}");
    assert!(report.ops_planned >= 1, "{report:?}");
    let records = receive_as_lambda(&sqs, queue.queue_url(), report.ops_planned).await;
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).expect("SQS event");
    let response = payment_worker::handler(&app, LambdaEvent::new(event, Context::default()))
        .await
        .expect("handler");
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    let ops = Repo::new(app.store.as_ref())
        .ops(&OrderKey::new("coldstart", "shop", "2001"), Utc::now())
        .await
        .expect("ops");
    assert!(!ops.is_empty());
    assert!(ops.iter().all(|op| op.status == OpStatus::Done), "{ops:?}");
}
