//! The payment worker's handler with real SQS event shapes, on an app over the embedded SQLite
//! store and queue with the in-memory ERP and PSP: a batch with one poisoned record reports
//! exactly that record; a job that must wait is reported failed and its message delayed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{Duration, Utc};
use lambda_runtime::{Context, LambdaEvent};
use paybridge_core::app::{App, Settings};
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
use paybridge_core::queue::Job;
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::repo::Repo;
use paybridge_core::store::sqlite::SqliteStore;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

const POISONED: &str = "0b9d2c44-71e5-4f7e-8c2d-5e8a3b6f9d02";

fn config(quiet_hours: &str) -> Config {
    let text = format!(
        r#"
[tenant]
id = "acme"
timezone = "UTC"
quiet_hours = "{quiet_hours}"

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
"#
    );
    Config::parse(&text, "test.toml").expect("test config")
}

struct Harness {
    app: App,
    erp: MemoryErp,
}

fn harness() -> Harness {
    let erp = MemoryErp::new();
    let psp = MemoryPsp::new();
    let eur = |s: &str| Money::parse(s, Currency::EUR).expect("amount");
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
        config: Arc::new(config("off")),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(5).expect("queue")),
        erps,
        psp: Arc::new(psp),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "test".into(),
    };
    Harness { app, erp }
}

fn key() -> OrderKey {
    OrderKey::new("acme", "main", "1001")
}

async fn invoke(app: &App, event: SqsEvent) -> SqsBatchResponse {
    payment_worker::handler(app, LambdaEvent::new(event, Context::default()))
        .await
        .expect("the handler itself never fails")
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn a_poisoned_record_is_the_only_failure_and_the_others_run() {
    let h = harness();
    let now = Utc::now();
    let report = h.app.poll_cycle(now).await.expect("poll");
    assert_eq!(report.ops_planned, 1, "{report:?}");
    // The job the poller enqueued, as its SQS message body.
    let delivery = h
        .app
        .queue
        .receive(
            10,
            std::time::Duration::from_secs(60),
            now.timestamp_millis(),
        )
        .await
        .expect("receive")
        .pop()
        .expect("one job");
    let Job::RunOp { op_id, .. } = &delivery.job else {
        panic!("expected a run_op job, got {:?}", delivery.job);
    };
    let body = serde_json::to_string(&delivery.job).expect("job JSON");
    let fixture = include_str!("fixtures/sqs-batch.json").replace(
        "\"{{RUN_OP_JOB}}\"",
        &serde_json::to_string(&body).expect("JSON string"),
    );
    let event: SqsEvent = serde_json::from_str(&fixture).expect("SQS event fixture");
    assert_eq!(event.records.len(), 3);

    let response = invoke(&h.app, event).await;

    assert_eq!(failed_ids(&response), [POISONED]);
    assert_eq!(
        serde_json::to_value(&response).expect("response JSON"),
        json!({ "batchItemFailures": [{ "itemIdentifier": POISONED }] }),
        "the wire shape Lambda reads"
    );
    // Record 1 ran: the operation is done and the ERP order released.
    let op = Repo::new(h.app.store.as_ref())
        .op(&key(), op_id, Utc::now())
        .await
        .expect("read op")
        .expect("op exists");
    assert_eq!(op.status, OpStatus::Done, "{op:?}");
    let order = h.erp.order("1001").expect("order");
    assert_eq!(order.status, OrderStatus::Open, "released");
    assert!(
        h.erp
            .comments("1001")
            .iter()
            .any(|c| c.contains("released")),
        "{:?}",
        h.erp.comments("1001")
    );
}

#[tokio::test]
async fn a_job_that_must_wait_is_reported_failed_and_its_message_delayed() {
    let h = harness();
    let now = Utc::now();
    h.app.poll_cycle(now).await.expect("poll");
    let delivery = h
        .app
        .queue
        .receive(
            10,
            std::time::Duration::from_secs(30),
            now.timestamp_millis(),
        )
        .await
        .expect("receive")
        .pop()
        .expect("one job");
    // The same store and queue, now inside ERP quiet hours (one hour either side of now).
    let quiet = format!(
        "{}-{}",
        (now - Duration::hours(1)).format("%H:%M"),
        (now + Duration::hours(1)).format("%H:%M")
    );
    let quiet_app = App {
        config: Arc::new(config(&quiet)),
        store: Arc::clone(&h.app.store),
        queue: Arc::clone(&h.app.queue),
        erps: h.app.erps.clone(),
        psp: Arc::clone(&h.app.psp),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "test".into(),
    };
    let event: SqsEvent = serde_json::from_value(json!({ "Records": [{
        "messageId": delivery.message_id,
        "receiptHandle": delivery.receipt,
        "body": serde_json::to_string(&delivery.job).expect("job JSON"),
        "attributes": { "ApproximateReceiveCount": "1" },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:paybridge-jobs",
        "awsRegion": "eu-central-1"
    }]}))
    .expect("event");

    let response = invoke(&quiet_app, event).await;

    assert_eq!(failed_ids(&response), [delivery.message_id.as_str()]);
    assert_eq!(
        h.erp.order("1001").expect("order").status,
        OrderStatus::Hold
    );
    // The message was made invisible until the quiet hours end, not for the 30 s it had.
    let later = (now + Duration::minutes(5)).timestamp_millis();
    let none = h
        .app
        .queue
        .receive(10, std::time::Duration::from_secs(30), later)
        .await
        .expect("receive");
    assert!(none.is_empty(), "delivered early: {none:?}");
    let after = (now + Duration::minutes(61)).timestamp_millis();
    let again = h
        .app
        .queue
        .receive(10, std::time::Duration::from_secs(30), after)
        .await
        .expect("receive");
    assert_eq!(again.len(), 1, "delivered again after the quiet hours");
}
