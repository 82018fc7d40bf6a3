//! The poller's handler with both schedule payloads: the `Input` EventBridge Scheduler
//! (`ScheduleV2`) delivers and a classic rule's "Scheduled Event" each run one poll cycle on an
//! app over the embedded SQLite store and queue with the in-memory ERP and PSP.

use lambda_runtime::{Context, LambdaEvent};
use paybridge_core::app::{App, Settings};
use paybridge_core::config::Config;
use paybridge_core::erp::Erp;
use paybridge_core::erp::memory::{MemoryErp, line};
use paybridge_core::model::{ErpOrder, LineStatus, OrderStatus};
use paybridge_core::money::{Currency, Money};
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::sqlite::SqliteStore;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

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

fn harness() -> (App, MemoryErp) {
    let erp = MemoryErp::new();
    let eur = |s: &str| Money::parse(s, Currency::EUR).expect("amount");
    for id in ["1001", "1002"] {
        erp.upsert(ErpOrder {
            order_id: id.into(),
            mandant: "01".into(),
            shop_order_no: format!("S-{id}"),
            // Not paid yet: no PSP payment id.
            psp_payment_id: None,
            payment_method: "UNZER".into(),
            status: OrderStatus::Hold,
            total: eur("10.00"),
            lines: vec![line("L1", LineStatus::Open, eur("10.00"))],
            shipping_lock: false,
            invoices: vec![],
            credit_notes: vec![],
            customer_key: None,
        });
    }
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    erps.insert("main".into(), Arc::new(erp.clone()));
    let app = App {
        config: Arc::new(Config::parse(CONFIG, "test.toml").expect("config")),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(5).expect("queue")),
        erps,
        psp: Arc::new(MemoryPsp::new()),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "test".into(),
    };
    (app, erp)
}

async fn tick(app: &App, payload: &str) -> Value {
    let event: Value = serde_json::from_str(payload).expect("fixture JSON");
    erp_poller::handler(app, LambdaEvent::new(event, Context::default()))
        .await
        .expect("poll cycle")
}

/// The report of a cycle that saw `orders_seen` orders and planned what the engine decided for
/// them (each planned operation is also a queued job).
async fn assert_cycle(app: &App, report: &Value, orders_seen: u64) {
    let planned = report["ops_planned"].as_u64().expect("ops_planned");
    assert_eq!(
        report,
        &json!({
            "orders_seen": orders_seen, "ops_planned": planned, "held_quiet_hours": 0,
            "held_lease": 0, "swept_ops": 0, "swept_events": 0, "swept_rechecks": 0
        })
    );
    let depth = app.queue.depth().await.expect("depth") as u64;
    assert!(
        depth >= planned,
        "planned work is queued: {depth} < {planned}"
    );
}

#[tokio::test]
async fn an_eventbridge_scheduler_tick_runs_a_poll_cycle() {
    let (app, erp) = harness();
    let before = erp.calls();
    let report = tick(&app, include_str!("fixtures/scheduler-event.json")).await;
    assert_cycle(&app, &report, 2).await;
    assert!(report["ops_planned"].as_u64() > Some(0), "{report}");
    assert!(erp.calls() > before, "the ERP was read");
    // The watermark moved: the next tick finds nothing new (but still asks the ERP).
    let calls = erp.calls();
    let report = tick(&app, include_str!("fixtures/scheduler-event.json")).await;
    assert_cycle(&app, &report, 0).await;
    assert_eq!(report["ops_planned"], 0);
    assert!(erp.calls() > calls);
}

#[tokio::test]
async fn a_classic_scheduled_event_runs_a_poll_cycle() {
    let (app, erp) = harness();
    let before = erp.calls();
    let report = tick(&app, include_str!("fixtures/classic-scheduled-event.json")).await;
    assert_cycle(&app, &report, 2).await;
    assert!(report["ops_planned"].as_u64() > Some(0), "{report}");
    assert!(erp.calls() > before, "the ERP was read");
}

#[tokio::test]
async fn any_other_payload_also_polls() {
    let (app, _erp) = harness();
    let report = tick(&app, "{}").await;
    assert_cycle(&app, &report, 2).await;
}
