//! The Paygate notify function with API Gateway HTTP API (payload format 2.0) events, turned
//! into requests by `lambda_http` exactly as in Lambda and answered by the shared router on an
//! app over the embedded SQLite store and queue. The notifies are real: a `key=value` plaintext
//! with its HMAC-SHA256 MAC over `PayID*TransID*mid*Status*Code`, Blowfish-encrypted with the
//! account's password ([`paybridge_core::psp::paygate::envelope`]) and posted form-encoded as
//! `MerchantID`, `Len`, `Data` (base64-encoded in the event, or as text: HTTP APIs do either).
//! An authentic notify → 200 accepted (stored and enqueued), the same again → 200 duplicate;
//! every refusal (wrong MAC key, wrong Blowfish key, unknown MerchantID, truncated Data,
//! oversize) stores and enqueues nothing.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use paybridge_core::app::{App, Settings};
use paybridge_core::config::Config;
use paybridge_core::erp::Erp;
use paybridge_core::erp::memory::MemoryErp;
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::psp::paygate::envelope::{self, Cipher};
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::repo::{EventRecord, Repo};
use paybridge_core::store::sqlite::SqliteStore;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

const MID: &str = "shop-42";
const BLOWFISH: &str = "blowfishPW01";
const HMAC: &str = "hmacPW-0123456789";
const PAY_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

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
erp_method = "CTP_CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "shop-42"
encryption_key = "plain:blowfishPW01"
hmac_key = "plain:hmacPW-0123456789"
psp_method = "card"
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

/// A notify as Paygate posts it: `MerchantID=…&Len=…&Data=…`, its plaintext MACed with
/// `mac_key` and Blowfish-encrypted with `cipher_key`.
fn notify(mac_key: &str, cipher_key: &str) -> String {
    let (trans_id, status, code) = ("order-1001", "AUTHORIZED", "00000000");
    let mac = envelope::mac(
        mac_key.as_bytes(),
        &envelope::response_mac_message(PAY_ID, trans_id, MID, status, code),
    );
    let plain = format!(
        "mid={MID}&PayID={PAY_ID}&XID=x-77&TransID={trans_id}&Status={status}&Code={code}&Description=success&MAC={mac}"
    );
    let (data, len) =
        envelope::seal(Cipher::Blowfish, cipher_key.as_bytes(), &plain).expect("Blowfish encrypts");
    format!("MerchantID={MID}&Len={len}&Data={data}")
}

/// The authentic notify of the configured account.
fn good_notify() -> String {
    notify(HMAC, BLOWFISH)
}

/// The API Gateway HTTP API event of a `POST /webhooks/paygate` with `body`, base64-encoded
/// (`isBase64Encoded`, as HTTP APIs may pass a form-encoded body).
fn event(body: &[u8]) -> String {
    event_with(body, true)
}

/// The event with `body` base64-encoded or as plain text.
fn event_with(body: &[u8], base64: bool) -> String {
    let text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("a text body")
    };
    json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/paygate",
        "rawPath": "/webhooks/paygate",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-type": "application/x-www-form-urlencoded",
            "host": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com",
            "user-agent": "Computop-Paygate",
            "x-forwarded-for": "203.0.113.20",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            "content-length": body.len().to_string()
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": "POST",
                "path": "/webhooks/paygate",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.20",
                "userAgent": "Computop-Paygate"
            },
            "requestId": "Pg1AbCdEfGhIjKl=",
            "routeKey": "POST /webhooks/paygate",
            "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795420800000u64
        },
        "isBase64Encoded": base64,
        "body": text
    })
    .to_string()
}

/// The API Gateway event → `lambda_http` request → handler → status and JSON body.
async fn call(app: &Arc<App>, body: &[u8]) -> (StatusCode, Value) {
    call_event(app, &event(body)).await
}

async fn call_event(app: &Arc<App>, event: &str) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(event).expect("API Gateway v2 event");
    let response = paygate_notify::handler(paybridge_core::http::router(Arc::clone(app)), request)
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

async fn stored_events(app: &App) -> Vec<EventRecord> {
    Repo::new(app.store.as_ref())
        .unapplied_events("acme", 100, chrono::Utc::now())
        .await
        .expect("events")
}

/// Nothing was stored or enqueued.
async fn assert_untouched(app: &App) {
    assert!(stored_events(app).await.is_empty(), "an event was stored");
    assert_eq!(
        app.queue.depth().await.expect("depth"),
        0,
        "a job was queued"
    );
}

/// `status` with `{"error": …}` containing `reason`, and nothing stored.
async fn assert_refused(app: &Arc<App>, body: &[u8], status: StatusCode, reason: &str) {
    let (got, answer) = call(app, body).await;
    assert_eq!(got, status, "answer {answer}");
    let error = answer["error"].as_str().expect("an error text");
    assert!(error.contains(reason), "{error:?} does not say {reason:?}");
    assert_untouched(app).await;
}

#[test]
fn paygate_notify_events_become_the_requests_the_router_sees() {
    let body = good_notify();
    for base64 in [true, false] {
        let request =
            lambda_http::request::from_str(&event_with(body.as_bytes(), base64)).expect("event");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/webhooks/paygate");
        // A base64 body is decoded: the router sees the form exactly as sent, either way.
        assert_eq!(request.body().as_ref(), body.as_bytes());
    }
    assert!(body.starts_with("MerchantID=shop-42&Len="));
}

#[tokio::test]
async fn paygate_notify_authentic_is_accepted_stored_and_enqueued_then_duplicate() {
    let app = app();
    let (status, body) = call(&app, good_notify().as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "accepted" }));
    let events = stored_events(&app).await;
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(ev.psp, "paygate");
    assert_eq!(ev.payment_id, PAY_ID);
    assert_eq!(ev.public_key, MID);
    assert_eq!(ev.event, "paygate.authorized");
    assert!(!ev.applied);
    // No order is known for the payment yet: the event counts as unverified.
    assert!(ev.unverified);
    assert_eq!(app.queue.depth().await.expect("depth"), 1);

    // Paygate sends again until it gets a 2xx: the same notify is a duplicate, not a second
    // event or job, whether the HTTP API passes it base64-encoded or as text.
    for base64 in [true, false] {
        let event = event_with(good_notify().as_bytes(), base64);
        let (status, body) = call_event(&app, &event).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "duplicate" }));
        assert_eq!(stored_events(&app).await.len(), 1);
        assert_eq!(app.queue.depth().await.expect("depth"), 1);
    }
}

#[tokio::test]
async fn paygate_notify_without_merchant_id_is_matched_to_the_configured_account() {
    // Paygate's docs show the notify as Len and Data only: the receiver tries each account.
    let app = app();
    let body = good_notify().replacen(&format!("MerchantID={MID}&"), "", 1);
    assert!(!body.contains("MerchantID"));
    let (status, answer) = call(&app, body.as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({ "status": "accepted" }));
    let events = stored_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].public_key, MID);
    assert_eq!(events[0].payment_id, PAY_ID);
    assert_eq!(app.queue.depth().await.expect("depth"), 1);
}

#[tokio::test]
async fn paygate_notify_with_a_wrong_mac_key_is_401_and_stores_nothing() {
    let app = app();
    let forged = notify("not-the-hmac-password", BLOWFISH);
    assert_refused(
        &app,
        forged.as_bytes(),
        StatusCode::UNAUTHORIZED,
        "MAC does not verify",
    )
    .await;
}

#[tokio::test]
async fn paygate_notify_with_a_wrong_blowfish_key_is_401_and_stores_nothing() {
    let app = app();
    let forged = notify(HMAC, "anotherBlowfishKey");
    assert_refused(
        &app,
        forged.as_bytes(),
        StatusCode::UNAUTHORIZED,
        "not authentic",
    )
    .await;
}

#[tokio::test]
async fn paygate_notify_with_an_unknown_merchant_id_is_401_and_stores_nothing() {
    let app = app();
    let body = good_notify().replacen(&format!("MerchantID={MID}&"), "MerchantID=someone-else&", 1);
    assert!(body.starts_with("MerchantID=someone-else&"));
    assert_refused(
        &app,
        body.as_bytes(),
        StatusCode::UNAUTHORIZED,
        "unknown MerchantID",
    )
    .await;
}

#[tokio::test]
async fn paygate_notify_with_truncated_data_is_refused_and_stores_nothing() {
    let app = app();
    let good = good_notify();
    // Cut one whole Blowfish block (16 hex digits) off Data: Len no longer fits.
    let block = &good[..good.len() - 16];
    // Cut a single hex digit: Data is no longer hex.
    let digit = &good[..good.len() - 1];
    for cut in [block, digit] {
        let (status, answer) = call(&app, cut.as_bytes()).await;
        assert!(status.is_client_error(), "{status} {answer}");
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&status),
            "{status} {answer}"
        );
        assert!(answer["error"].is_string(), "{answer}");
        assert_untouched(&app).await;
    }
    // A notify without Data at all is malformed.
    let no_data = good.split("&Data=").next().expect("a prefix").to_string();
    assert_refused(
        &app,
        no_data.as_bytes(),
        StatusCode::BAD_REQUEST,
        "Len and Data",
    )
    .await;
}

#[tokio::test]
async fn paygate_notify_oversize_body_is_413_and_stores_nothing() {
    let app = app();
    // Above Paygate's notify limit (8 KiB), below the router's: refused by the connector.
    let mut padded = good_notify();
    padded.push_str("&Custom=");
    padded.push_str(&"x".repeat(9 * 1024));
    assert_refused(
        &app,
        padded.as_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body too large",
    )
    .await;
    // Above the router's webhook limit (16 KiB): refused on its Content-Length.
    let mut huge = good_notify();
    huge.push_str("&Custom=");
    huge.push_str(&"x".repeat(20 * 1024));
    assert_refused(
        &app,
        huge.as_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body too large",
    )
    .await;
    // The authentic notify still goes through afterwards.
    let (status, _) = call(&app, good_notify().as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored_events(&app).await.len(), 1);
}
