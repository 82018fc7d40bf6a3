//! The HTTP surface of paybridge, as one axum [`Router`] over the shared [`App`]: `paybridge
//! serve` binds it to a socket and the `unzer-webhook` Lambda function runs it under
//! `lambda_http`, so both answer exactly alike:
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok","tenant":..}`; 503 when the store cannot be read |
//! | `POST /webhooks/{psp}` | [`App::accept_webhook`] with the connector of `{psp}` (`unzer`, `paygate`, `memory`): 200 `{"status":"accepted"\|"duplicate"}`, 400 malformed, 401 unknown account or not authentic (Paygate: no decrypt / MAC), 404 no such PSP, 413 too large, 429 budget of events for unknown payments used up (`Retry-After`), 503 store unavailable |
//! | `GET /problems` | orders with open errors: connection, order id, codes, messages (amounts redacted) |
//! | `GET`/`POST /paylink/done`, `/paylink/failed` | the customer's return from a payment link's page (§3.6): a static page; the redirect's data is not read |
//!
//! A webhook's `Content-Type` is not checked: the PSPs do not promise one (Unzer's docs name
//! none), so every body is parsed as the PSP's JSON and judged by what it says.
//!
//! Every error body is `{"error": "<reason>"}`. Handlers parse, call one `app::` function and
//! shape the answer; nothing else happens here. No route echoes a request body, a secret or an
//! amount.

use crate::app::{App, MAX_WEBHOOK_BYTES, WebhookError};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// The router; `paybridge serve` binds it to `server.listen`, tests call it with `oneshot`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/problems", get(problems))
        .route(
            "/webhooks/{psp}",
            // The largest limit `accept_webhook` enforces, applied before the body is buffered;
            // a larger declared `Content-Length` is refused before the body is even read.
            post(psp_webhook)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
                .layer(middleware::from_fn_with_state(
                    MAX_WEBHOOK_BYTES,
                    refuse_declared_oversize,
                )),
        )
        // Where the customer returns from the PSP's payment page (§3.6). The redirect's data
        // is not read: anyone can post it (reference paygate.md §1.7); the PSP's webhook and
        // a fresh read decide.
        .route(
            "/paylink/done",
            get(paylink_done)
                .post(paylink_done)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .route(
            "/paylink/failed",
            get(paylink_failed)
                .post(paylink_failed)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .with_state(app)
}

/// A small page for the customer back from the payment page; says nothing about the payment
/// (the redirect proves nothing) beyond what the customer did.
fn paylink_page(shop: &str, title: &str, text: &str) -> axum::response::Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\">\
         <h1>{title}</h1><p>{text}</p><p>{shop}</p></body></html>",
        title = esc(title),
        text = esc(text),
        shop = esc(shop),
    );
    (
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn paylink_done(State(app): State<Arc<App>>) -> axum::response::Response {
    paylink_page(
        &app.config.tenant.shop_name,
        "Thank you",
        "Your payment is being processed. You will hear from us when your order ships.",
    )
}

async fn paylink_failed(State(app): State<Arc<App>>) -> axum::response::Response {
    paylink_page(
        &app.config.tenant.shop_name,
        "Payment not completed",
        "The payment was not completed. You can use the link in our e-mail again.",
    )
}

/// 413 for a request whose `Content-Length` exceeds `limit` (the route's body limit), at once
/// and with `Connection: close`: the body is never read, so a client declaring a huge body
/// cannot make the server wait for it. Requests without the header (chunked) pass; the route's
/// body limit still counts their bytes.
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            tracing::warn!(
                declared = length,
                limit,
                "request refused: declared body too large"
            );
            let mut response = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large (limit {limit} bytes)"),
            );
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let tenant = app.config.tenant.id.clone();
    // A cheap read of a key that never exists: proves the store answers.
    match app
        .store
        .get("HEALTH", "PING", Utc::now().timestamp())
        .await
    {
        Ok(_) => Json(json!({ "status": "ok", "tenant": tenant })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "tenant": tenant, "error": "store unavailable" })),
            )
                .into_response()
        }
    }
}

async fn psp_webhook(
    State(app): State<Arc<App>>,
    Path(psp): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if crate::psp::webhook(&psp).is_none() {
        return error(StatusCode::NOT_FOUND, "no such route");
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(limit = MAX_WEBHOOK_BYTES, "webhook refused: body too large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large (limit {MAX_WEBHOOK_BYTES} bytes)"),
            );
        }
        Err(rejection) => {
            tracing::warn!(error = %rejection, "webhook refused: body unreadable");
            return error(StatusCode::BAD_REQUEST, "body could not be read");
        }
    };
    match app.accept_webhook(&psp, &body, Utc::now()).await {
        Ok(ack) => {
            let status = if ack.duplicate {
                "duplicate"
            } else {
                "accepted"
            };
            tracing::info!(psp = %psp, status, "PSP webhook");
            Json(json!({ "status": status })).into_response()
        }
        Err(e) => {
            let status = match &e {
                WebhookError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                WebhookError::Malformed(_) => StatusCode::BAD_REQUEST,
                WebhookError::UnknownAccount(_) | WebhookError::Unauthentic(_) => {
                    StatusCode::UNAUTHORIZED
                }
                WebhookError::UnknownPsp(_) => StatusCode::NOT_FOUND,
                WebhookError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                WebhookError::OverBudget(_) => StatusCode::TOO_MANY_REQUESTS,
            };
            tracing::warn!(psp = %psp, status = status.as_u16(), reason = %e, "PSP webhook refused");
            let mut answer = error(status, e.to_string());
            if let WebhookError::OverBudget(secs) = e {
                answer.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs.max(1)),
                );
            }
            answer
        }
    }
}

/// One order with open errors, as `/problems` lists it.
#[derive(Debug, Serialize)]
struct ProblemView {
    connection: String,
    order_id: String,
    codes: Vec<String>,
    messages: Vec<String>,
    updated_at: DateTime<Utc>,
}

async fn problems(State(app): State<Arc<App>>) -> Response {
    match app.problem_orders(Utc::now()).await {
        Ok(orders) => {
            let list: Vec<ProblemView> = orders
                .iter()
                .map(|o| {
                    let open: Vec<_> = o.open_errors().collect();
                    ProblemView {
                        connection: o.key.conn.clone(),
                        order_id: o.key.order_id.clone(),
                        codes: open.iter().map(|f| f.code.clone()).collect(),
                        messages: open.iter().map(|f| redact_amounts(&f.message)).collect(),
                        updated_at: o.updated_at,
                    }
                })
                .filter(|p| !p.codes.is_empty())
                .collect();
            Json(list).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "problems: store unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// Replaces amounts written as `Money` prints them (`250.00 EUR`, `-5 JPY`) by `*** EUR`: the
/// list is readable without authentication, so it names the problem but not the money.
fn redact_amounts(message: &str) -> String {
    let words: Vec<&str> = message.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let number = word.trim_start_matches(['(', '[']);
        let prefix = &word[..word.len() - number.len()];
        let before_currency = words
            .get(i + 1)
            .is_some_and(|next| starts_with_currency(next));
        if before_currency && looks_numeric(number) {
            out.push(format!("{prefix}***"));
        } else {
            out.push((*word).to_string());
        }
    }
    out.join(" ")
}

fn looks_numeric(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
}

/// Three upper-case ASCII letters, then nothing or a non-letter (`EUR`, `EUR)`, `EUR,`).
fn starts_with_currency(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_uppercase)
        && b.get(3).is_none_or(|c| !c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Settings;
    use crate::config::Config;
    use crate::erp::memory::MemoryErp;
    use crate::model::{
        ErpOrder, OrderStatus, PaymentMethod, PaymentState, PspPayment, PspTransaction, TxKind,
        TxStatus,
    };
    use crate::money::{Currency, Money};
    use crate::notify::LogNotifier;
    use crate::psp::memory::MemoryPsp;
    use crate::queue::sqlite::SqliteQueue;
    use crate::store::repo::Repo;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Item, Store, StoreError, Write};
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::collections::HashMap;
    use tower::ServiceExt;

    const CONFIG: &str = r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "shop"
kind = "memory"
fixtures = "not-read-in-these-tests.json"

[[method]]
erp = "shop"
mandant = "01"
erp_method = "CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-known"
private_key = "plain:s-priv-test"
"#;

    struct Fixture {
        app: Arc<App>,
        erp: MemoryErp,
        psp: MemoryPsp,
    }

    fn fixture_with_store(store: Arc<dyn Store>) -> Fixture {
        let config = Config::parse(CONFIG, "test.toml").expect("test config parses");
        let erp = MemoryErp::new();
        let psp = MemoryPsp::new();
        let mut erps: HashMap<String, Arc<dyn crate::erp::Erp>> = HashMap::new();
        erps.insert("shop".into(), Arc::new(erp.clone()));
        let app = App {
            config: Arc::new(config),
            store,
            queue: Arc::new(SqliteQueue::open_in_memory(10).expect("queue")),
            erps,
            psp: Arc::new(psp.clone()),
            notifier: Arc::new(LogNotifier),
            settings: Settings::default(),
            holder: "test".into(),
        };
        Fixture {
            app: Arc::new(app),
            erp,
            psp,
        }
    }

    fn fixture() -> Fixture {
        fixture_with_store(Arc::new(SqliteStore::open_in_memory().expect("store")))
    }

    async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = router(Arc::clone(app))
            .oneshot(req)
            .await
            .expect("router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JSON body ({e}): {bytes:?}"));
        (status, value)
    }

    fn get_req(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("request")
    }

    fn webhook(body: impl Into<Body>) -> Request<Body> {
        Request::post("/webhooks/unzer")
            .header("content-type", "application/json")
            .body(body.into())
            .expect("request")
    }

    fn hook(public_key: &str) -> String {
        json!({
            "event": "payment.completed",
            "publicKey": public_key,
            "retrieveUrl": "https://api.unzer.com/v1/payments/s-pay-1",
            "paymentId": "s-pay-1",
        })
        .to_string()
    }

    async fn stored_events(app: &App) -> usize {
        let repo = Repo::new(app.store.as_ref());
        repo.unapplied_events("acme", 100, Utc::now())
            .await
            .expect("events")
            .len()
    }

    #[tokio::test]
    async fn health_is_ok_with_tenant() {
        let f = fixture();
        let (status, body) = call(&f.app, get_req("/health")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "ok", "tenant": "acme" }));
    }

    struct BrokenStore;

    #[async_trait]
    impl Store for BrokenStore {
        async fn get(&self, _: &str, _: &str, _: i64) -> Result<Option<Item>, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn insert(&self, _: &Item, _: i64) -> Result<bool, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn update(&self, _: &Item) -> Result<u64, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn query(&self, _: &str, _: &str, _: i64) -> Result<Vec<Item>, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn query_index(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
            _: i64,
        ) -> Result<Vec<Item>, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn delete(&self, _: &str, _: &str, _: u64) -> Result<(), StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
        async fn commit(&self, _: &[Write], _: i64) -> Result<Vec<u64>, StoreError> {
            Err(StoreError::Backend("disk gone".into()))
        }
    }

    #[tokio::test]
    async fn unusable_store_is_503_everywhere() {
        let f = fixture_with_store(Arc::new(BrokenStore));
        let (status, body) = call(&f.app, get_req("/health")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
        assert!(
            !body.to_string().contains("disk gone"),
            "internal errors stay in the log: {body}"
        );

        let (status, body) = call(&f.app, webhook(hook("s-pub-known"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].is_string());

        let (status, _) = call(&f.app, get_req("/problems")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn webhook_with_unknown_key_is_401_and_stores_nothing() {
        let f = fixture();
        let (status, body) = call(&f.app, webhook(hook("s-pub-stranger"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({ "error": "unknown public key" }));
        assert_eq!(stored_events(&f.app).await, 0);
        assert_eq!(f.app.queue.depth().await.expect("depth"), 0);
    }

    #[tokio::test]
    async fn oversize_webhook_is_413() {
        let f = fixture();
        // Valid JSON padded past the limit: refused for its size alone.
        let padded = format!("{}{}", hook("s-pub-known"), " ".repeat(MAX_WEBHOOK_BYTES));
        let (status, body) = call(&f.app, webhook(padded)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("too large")),
            "{body}"
        );
        assert_eq!(stored_events(&f.app).await, 0);
    }

    /// The content type is not judged (Unzer promises none): a valid event is accepted as
    /// `text/plain` and with no header; a body that is not the webhook's JSON is 400 under any.
    #[tokio::test]
    async fn webhooks_are_judged_by_the_body_not_the_content_type() {
        let post = |ct: Option<&str>, body: String| {
            let mut b = Request::post("/webhooks/unzer");
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            b.body(Body::from(body)).expect("request")
        };
        let f = fixture();
        let (status, body) = call(&f.app, post(Some("text/plain"), hook("s-pub-known"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({ "status": "accepted" }));
        let f = fixture();
        let (status, body) = call(&f.app, post(None, hook("s-pub-known"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({ "status": "accepted" }));
        assert_eq!(stored_events(&f.app).await, 1);
        let f = fixture();
        for ct in [Some("text/plain"), None, Some("application/json")] {
            let (status, body) = call(&f.app, post(ct, "event=payment.completed".into())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ct:?}: {body}");
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{body}"
            );
        }
        assert_eq!(stored_events(&f.app).await, 0);
    }

    #[tokio::test]
    async fn declared_oversize_is_413_without_reading_the_body() {
        let f = fixture();
        // The declared length is far beyond the limit; the body itself never ends: reading it
        // would hang the test.
        let never = Body::new(NeverEnds);
        let req = Request::post("/webhooks/unzer")
            .header("content-type", "application/json")
            .header("content-length", "1000000000000000")
            .body(never)
            .expect("request");
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            router(Arc::clone(&f.app)).oneshot(req),
        )
        .await
        .expect("answered without reading the body")
        .expect("router answers");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            json!({ "error": format!("body too large (limit {MAX_WEBHOOK_BYTES} bytes)") })
        );
        assert_eq!(stored_events(&f.app).await, 0);
    }

    /// A body that never yields a byte nor ends.
    struct NeverEnds;

    impl http_body::Body for NeverEnds {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn declared_length_at_the_limit_passes_to_the_handler() {
        let f = fixture();
        let junk = "x".repeat(MAX_WEBHOOK_BYTES);
        let req = Request::post("/webhooks/unzer")
            .header("content-type", "application/json")
            .header("content-length", MAX_WEBHOOK_BYTES.to_string())
            .body(Body::from(junk))
            .expect("request");
        let (status, _) = call(&f.app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "judged by the handler");
    }

    #[tokio::test]
    async fn body_at_the_limit_is_read_and_judged() {
        let f = fixture();
        let junk = "x".repeat(MAX_WEBHOOK_BYTES);
        let (status, _) = call(&f.app, webhook(junk)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "exactly the limit is not too large"
        );
    }

    #[tokio::test]
    async fn malformed_webhooks_are_400() {
        let f = fixture();
        for body in [
            "not json".to_string(),
            "{}".to_string(),
            json!({"event": "payment.completed", "publicKey": "s-pub-known", "retrieveUrl": "https://x/none"}).to_string(),
        ] {
            let (status, resp) = call(&f.app, webhook(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(resp["error"].is_string(), "{resp}");
        }
        assert_eq!(stored_events(&f.app).await, 0);
    }

    #[tokio::test]
    async fn good_webhook_is_accepted_once_then_duplicate() {
        let f = fixture();
        let (status, body) = call(&f.app, webhook(hook("s-pub-known"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "accepted" }));
        assert_eq!(stored_events(&f.app).await, 1);
        assert_eq!(f.app.queue.depth().await.expect("depth"), 1);

        let (status, body) = call(&f.app, webhook(hook("s-pub-known"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "duplicate" }));
        assert_eq!(stored_events(&f.app).await, 1);
        assert_eq!(
            f.app.queue.depth().await.expect("depth"),
            1,
            "a duplicate is not enqueued again"
        );
    }

    #[tokio::test]
    async fn problems_list_open_errors_without_amounts() {
        let f = fixture();
        let eur = Currency::EUR;
        f.erp.upsert(ErpOrder {
            order_id: "10004".into(),
            mandant: "01".into(),
            shop_order_no: "S-10004".into(),
            psp_payment_id: Some("s-pay-10004".into()),
            payment_method: "CARD".into(),
            status: OrderStatus::Hold,
            total: Money::from_minor(25_000, eur),
            lines: vec![],
            shipping_lock: false,
            invoices: vec![],
            credit_notes: vec![],
            customer_key: None,
        });
        f.psp.put(PspPayment {
            payment_id: "s-pay-10004".into(),
            state: PaymentState::Pending,
            method: PaymentMethod::Card,
            currency: eur,
            transactions: vec![PspTransaction {
                at: None,
                id: "s-aut-1".into(),
                kind: TxKind::Authorize,
                status: TxStatus::Success,
                amount: Money::from_minor(2_500, eur),
                reference: None,
            }],
            bank_details: None,
            totals_only: false,
        });
        let (status, body) = call(&f.app, get_req("/problems")).await;
        assert_eq!((status, body), (StatusCode::OK, json!([])));

        f.app.poll_cycle(Utc::now()).await.expect("poll");
        let (status, body) = call(&f.app, get_req("/problems")).await;
        assert_eq!(status, StatusCode::OK);
        let list = body.as_array().expect("a list");
        assert_eq!(list.len(), 1, "{body}");
        assert_eq!(list[0]["order_id"], "10004");
        assert_eq!(list[0]["connection"], "shop");
        assert_eq!(list[0]["codes"], json!(["authorization_check"]));
        let text = body.to_string();
        assert!(
            text.contains("*** EUR"),
            "the amounts are redacted, the currency stays: {text}"
        );
        assert!(
            !text.contains("250.00") && !text.contains("25.00"),
            "amounts leaked: {text}"
        );
        assert!(!text.contains("s-priv"), "{text}");
    }

    #[test]
    fn redaction_hides_money_only() {
        assert_eq!(
            redact_amounts("amount mismatch: order 250.00 EUR / PSP 25.00 EUR"),
            "amount mismatch: order *** EUR / PSP *** EUR"
        );
        assert_eq!(
            redact_amounts("invoice R-7 (12.00 EUR) exceeds the open authorization (3 JPY)"),
            "invoice R-7 (*** EUR) exceeds the open authorization (*** JPY)"
        );
        assert_eq!(
            redact_amounts("refund -5.00 EUR, then"),
            "refund *** EUR, then"
        );
        assert_eq!(
            redact_amounts("invoice 4711 was shipped"),
            "invoice 4711 was shipped"
        );
        assert_eq!(redact_amounts("line 3 EURO"), "line 3 EURO");
    }
}
