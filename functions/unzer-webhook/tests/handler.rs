//! The webhook function with API Gateway HTTP API (payload format 2.0) events, turned into
//! requests by `lambda_http` exactly as in Lambda and answered by the shared router on an app
//! over the embedded SQLite store and queue: known key → 200 accepted (stored and enqueued),
//! unknown key → 401 (nothing stored), health → 200.

use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use paybridge_core::app::{App, Settings};
use paybridge_core::config::Config;
use paybridge_core::erp::Erp;
use paybridge_core::erp::memory::MemoryErp;
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::repo::Repo;
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

fn app() -> Arc<App> {
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    erps.insert("main".into(), Arc::new(MemoryErp::new()));
    Arc::new(App {
        config: Arc::new(Config::parse(CONFIG, "test.toml").expect("config")),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(5).expect("queue")),
        erps,
        psp: Arc::new(MemoryPsp::new()),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "test".into(),
    })
}

/// The API Gateway event → `lambda_http` request → handler → status and JSON body.
async fn call(app: &Arc<App>, fixture: &str) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(fixture).expect("API Gateway v2 event");
    let response = unzer_webhook::handler(paybridge_core::http::router(Arc::clone(app)), request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).expect("JSON answer");
    (status, body)
}

async fn stored_events(app: &App) -> usize {
    Repo::new(app.store.as_ref())
        .unapplied_events("acme", 100, chrono::Utc::now())
        .await
        .expect("events")
        .len()
}

#[test]
fn fixtures_become_the_requests_the_router_sees() {
    let request =
        lambda_http::request::from_str(include_str!("fixtures/apigw-v2-webhook-known-key.json"))
            .expect("event");
    assert_eq!(request.method(), Method::POST);
    assert_eq!(request.uri().path(), "/webhooks/unzer");
    let request = lambda_http::request::from_str(include_str!("fixtures/apigw-v2-health.json"))
        .expect("event");
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/health");
}

#[tokio::test]
async fn a_webhook_with_a_known_key_is_accepted_stored_and_enqueued() {
    let app = app();
    let (status, body) = call(
        &app,
        include_str!("fixtures/apigw-v2-webhook-known-key.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "accepted" }));
    assert_eq!(stored_events(&app).await, 1);
    assert_eq!(app.queue.depth().await.expect("depth"), 1);

    // Unzer retries: the same event again is a duplicate, not a second job.
    let (status, body) = call(
        &app,
        include_str!("fixtures/apigw-v2-webhook-known-key.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "duplicate" }));
    assert_eq!(app.queue.depth().await.expect("depth"), 1);
}

#[tokio::test]
async fn a_webhook_with_an_unknown_key_is_401_and_stores_nothing() {
    let app = app();
    // This fixture's body is base64-encoded (isBase64Encoded: true), as HTTP APIs send
    // bodies they do not treat as text.
    let (status, body) = call(
        &app,
        include_str!("fixtures/apigw-v2-webhook-unknown-key.json"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "error": "unknown public key" }));
    assert_eq!(stored_events(&app).await, 0);
    assert_eq!(app.queue.depth().await.expect("depth"), 0);
}

#[tokio::test]
async fn health_answers_200_with_the_tenant() {
    let app = app();
    let (status, body) = call(&app, include_str!("fixtures/apigw-v2-health.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok", "tenant": "acme" }));
}
