//! Hostile replies at the wire: the Unzer connector ([`UnzerPsp`]) and the pixi connector
//! ([`PixiErp`]) against a tiny loopback server that answers crafted bodies (and, where they have
//! the fault, the Unzer and pixi simulators).
//!
//! Unzer: non-JSON, truncated JSON, wrong types, float amounts with 10 decimals, negative
//! amounts, foreign currencies, unknown states and type ids, error objects with HTTP 2xx,
//! gigantic bodies, transaction urls on another host or outside the payment. `fetch` answers a
//! `PspError`, `execute` never answers `Done` for a malformed or mismatched reply, and no request
//! ever reaches a second ("foreign") server or a path outside `/v1/payments/{id}`.
//!
//! pixi: not XML, DTDs and entity expansion (billion laughs, external entities), SOAP 1.1 and 1.2
//! faults, missing or garbage `SqlResultCode`, rows with missing / extra / odd columns, garbage
//! money, single-row vs multi-row result sets, huge and deeply nested replies. The connector
//! answers `ErpError::BadReply` / `Refused` and never maps a wrong order silently; where a reply
//! is valid but odd, the mapped values are asserted to the cent.
//!
//! Mutation tests change valid replies character by character (300 cases each, drawn from fixed
//! seeds with a small PRNG: the testkit has no proptest dependency) and check the same contract.
//! A connector panic is caught (each call runs in its own task) and reported as a failure.
//!
//! Tests marked `#[ignore = "product bug: …"]` assert what the product should do and fail today.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use paybridge_core::config::{MethodConfig, Mode, PspAccount, PspKind, Secret, SecretRef};
use paybridge_core::erp::pixi::{PixiErp, PixiTimeouts};
use paybridge_core::erp::{Erp, ErpError};
use paybridge_core::ledger::{ErpWrite, PspCall, RefundReason};
use paybridge_core::model::{
    ErpOrder, LineStatus, OrderStatus, PaymentState, PspPayment, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::psp::unzer::{UnzerPsp, UnzerTimeouts};
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use paybridge_testkit::pixi_sim::{NewOrder, PixiSim, SimFault};
use paybridge_testkit::unzer_sim::{Fault, UnzerSim};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// --------------------------------------------------------------------- the crafted server ---

/// One request the crafted server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// The pixi call name, from the `SOAPAction` header.
    call: Option<String>,
}

/// What the crafted server answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }
    fn xml(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: "text/xml; charset=utf-8",
            body: body.into(),
        }
    }
}

type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct Shared {
    log: Mutex<Vec<Seen>>,
    responder: Mutex<Responder>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A loopback HTTP server that answers whatever the test tells it to and logs every request.
struct Crafted {
    base: String,
    shared: Arc<Shared>,
    _task: AbortOnDrop,
}

async fn crafted_handler(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let call = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.trim_matches('"');
            v.rsplit('/').next().unwrap_or(v).to_string()
        });
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        call,
    };
    s.log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(seen.clone());
    let responder = s
        .responder
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let r = responder(&seen);
    (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, r.content_type)],
        r.body,
    )
        .into_response()
}

impl Crafted {
    async fn start() -> Crafted {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            responder: Mutex::new(Arc::new(|_: &Seen| Reply::json(404, "{}"))),
        });
        let app = Router::new()
            .fallback(crafted_handler)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Crafted {
            base: format!("http://{addr}"),
            shared,
            _task: AbortOnDrop(task),
        }
    }

    fn respond(&self, f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        *self
            .shared
            .responder
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(f);
    }

    fn requests(&self) -> Vec<Seen> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn clear(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Runs `f` in its own task so that a connector panic becomes a clear test failure.
async fn no_panic<T: Send + 'static>(what: &str, f: impl Future<Output = T> + Send + 'static) -> T {
    match tokio::spawn(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => panic!("connector panicked on {what}"),
        Err(e) => panic!("task failed on {what}: {e}"),
    }
}

/// A small seeded PRNG (SplitMix64): the testkit has no proptest, so the mutation tests draw
/// their cases from fixed seeds and print the seed of a failing case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// Characters that matter to JSON and XML, sometimes any character at all.
    fn nasty_char(&mut self) -> char {
        const NASTY: &[char] = &[
            '"', '{', '}', '[', ']', ',', ':', '-', '.', '0', '1', '9', 'e', '<', '>', '/', '&',
            ';', ' ', '\n', '\0', '\u{feff}', 'x', '!', '?', '=', '\'', '#',
        ];
        if self.below(4) == 0 {
            char::from_u32(self.next() as u32 % 0x11_0000).unwrap_or('\u{fffd}')
        } else {
            NASTY[self.below(NASTY.len())]
        }
    }
}

/// 1 to `max` random edits (delete, duplicate, replace, insert, delete a run, copy a run).
fn mutate(text: &str, rng: &mut Rng, max: usize) -> String {
    let mut v: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(max) {
        let len = v.len();
        if len == 0 {
            v.push(rng.nasty_char());
            continue;
        }
        let i = rng.below(len);
        match rng.below(6) {
            0 => {
                v.remove(i);
            }
            1 => {
                let d = v[i];
                v.insert(i, d);
            }
            2 => v[i] = rng.nasty_char(),
            3 => v.insert(i, rng.nasty_char()),
            4 => {
                let n = 1 + rng.below(8);
                v.drain(i..(i + n).min(len));
            }
            _ => {
                let n = 1 + rng.below(16);
                let run: Vec<char> = v[i..(i + n).min(len)].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, run);
            }
        }
    }
    v.into_iter().collect()
}

/// Runs `case` for `n` seeds; a failing case names its seed and input.
fn fuzz(name: &str, n: u64, mut case: impl FnMut(&mut Rng) -> Result<(), String>) {
    for seed in 0..n {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
        if let Err(e) = case(&mut rng) {
            panic!("{name}: case with seed {seed} failed: {e}");
        }
    }
}

/// `Err` with a message unless `cond`.
fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

fn multi_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ------------------------------------------------------------------------------------ Unzer ---

const PUB: &str = "s-pub-hostile";
const PRIV: &str = "s-priv-hostile-secret";
const PID: &str = "s-pay-1";

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

fn account(base: &str) -> MethodConfig {
    MethodConfig {
        erp: "main".into(),
        mandant: "01".into(),
        erp_method: "UNZER".into(),
        psp: PspKind::Unzer,
        active: true,
        mode: Mode::Expert,
        invoice_event: "ZE".into(),
        return_event: "RE".into(),
        rounding_tolerance: 0,
        authorization_validity_days: None,
        pending_error_after_hours: 24,
        account: PspAccount {
            public_key: PUB.into(),
            private_key: SecretRef::Env("UNUSED_IN_WIRE_TESTS".into()),
            api_host: Some(base.to_string()),
            extra: Default::default(),
        },
    }
}

fn unzer() -> UnzerPsp {
    UnzerPsp::new(
        HashMap::from([(PUB.to_string(), Secret::new(PRIV))]),
        UnzerTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(10),
        },
    )
    .expect("connector")
}

/// A card payment authorized for 100.00 EUR, its transaction urls under `tx_base`.
fn payment_json(tx_base: &str, type_id: &str) -> Value {
    json!({
        "id": PID,
        "state": {"id": 0, "name": "pending"},
        "amount": {"total": "100.0000", "charged": "0.0000", "canceled": "0.0000", "remaining": "100.0000"},
        "currency": "EUR",
        "orderId": "o-1",
        "resources": {"typeId": type_id, "paymentId": PID, "customerId": ""},
        "transactions": [
            {"type": "authorize", "status": "success", "url": format!("{tx_base}/v1/payments/{PID}/authorize/s-aut-1"), "amount": "100.0000", "date": "2026-01-01 10:00:00"}
        ]
    })
}

fn capture_reply(amount: Value, currency: &str) -> Value {
    json!({
        "id": "s-chg-1",
        "isSuccess": true,
        "isPending": false,
        "isError": false,
        "isResumed": false,
        "amount": amount,
        "currency": currency,
        "paymentReference": "ref-1",
        "message": {"code": "COR.000.100.112", "merchant": "ok", "customer": "ok"},
        "resources": {"paymentId": PID, "typeId": "s-crd-abc"}
    })
}

/// Serves the payment on GET and `post` on every POST.
fn serve_payment(srv: &Crafted, payment: Value, post: Reply) {
    let payment = payment.to_string();
    srv.respond(move |seen| {
        if seen.method == "GET" && seen.path == format!("/v1/payments/{PID}") {
            Reply::json(200, payment.clone())
        } else if seen.method == "POST" {
            post.clone()
        } else {
            Reply::json(
                404,
                r#"{"isError":true,"errors":[{"code":"API.310.100.003","merchantMessage":"no"}]}"#,
            )
        }
    });
}

/// Every request went to the configured server and under our payment.
fn assert_only_our_payment(srv: &Crafted) {
    for r in srv.requests() {
        assert!(
            r.path == format!("/v1/payments/{PID}")
                || r.path.starts_with(&format!("/v1/payments/{PID}/")),
            "request outside the payment: {} {}",
            r.method,
            r.path
        );
        assert!(!r.path.contains(".."), "{}", r.path);
    }
}

async fn fetch_with(body: Reply) -> Result<PspPayment, PspError> {
    let srv = Crafted::start().await;
    srv.respond(move |_| body.clone());
    let cfg = account(&srv.base);
    let r = no_panic("fetch", async move { unzer().fetch(&cfg, PID).await }).await;
    assert_only_our_payment(&srv);
    r
}

fn is_done(o: &PspOutcome) -> bool {
    matches!(o, PspOutcome::Done { .. })
}

/// Captures 10.00 EUR on the valid payment; the POST answers `post`.
async fn capture_with(post: Reply) -> PspOutcome {
    let srv = Crafted::start().await;
    serve_payment(&srv, payment_json(&srv.base, "s-crd-abc"), post);
    let cfg = account(&srv.base);
    let out = no_panic("execute", async move {
        let psp = unzer();
        let p = psp.fetch(&cfg, PID).await.expect("valid payment");
        psp.execute(&cfg, &p, &PspCall::Capture { amount: eur(1000) }, "ref-1")
            .await
    })
    .await;
    assert_only_our_payment(&srv);
    out
}

#[tokio::test]
async fn unzer_valid_reply_baseline() {
    let p = fetch_with(Reply::json(
        200,
        payment_json("http://127.0.0.1:1", "s-crd-abc").to_string(),
    ))
    .await
    .expect("a valid payment");
    assert_eq!(p.payment_id, PID);
    assert_eq!(p.transactions[0].amount, eur(10_000));
    let out = capture_with(Reply::json(
        200,
        capture_reply(json!("10.0000"), "EUR").to_string(),
    ))
    .await;
    assert_eq!(
        out,
        PspOutcome::Done {
            tx_id: "s-chg-1".into()
        }
    );
}

#[tokio::test]
async fn unzer_fetch_of_malformed_payments_is_an_error() {
    let good = payment_json("http://127.0.0.1:1", "s-crd-abc");
    let text = good.to_string();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, Reply)> = vec![
        (
            "html",
            Reply::json(200, "<html><body>502 Bad Gateway</body></html>"),
        ),
        ("empty", Reply::json(200, "")),
        (
            "truncated",
            Reply::json(200, text[..text.len() / 2].to_string()),
        ),
        ("null", Reply::json(200, "null")),
        ("array", Reply::json(200, "[]")),
        ("nul bytes", Reply::json(200, vec![0u8; 64])),
        (
            "invalid utf-8",
            Reply::json(200, b"{\"id\":\"\xff\xfe\"}".to_vec()),
        ),
        (
            "id is a number",
            Reply::json(200, with(&|v| v["id"] = json!(1))),
        ),
        (
            "other payment",
            Reply::json(200, with(&|v| v["id"] = json!("s-pay-2"))),
        ),
        (
            "state is text",
            Reply::json(200, with(&|v| v["state"] = json!("completed"))),
        ),
        (
            "state id text",
            Reply::json(200, with(&|v| v["state"]["id"] = json!("1"))),
        ),
        (
            "currency number",
            Reply::json(200, with(&|v| v["currency"] = json!(978))),
        ),
        (
            "currency unknown",
            Reply::json(200, with(&|v| v["currency"] = json!("XXX"))),
        ),
        (
            "currency lower",
            Reply::json(200, with(&|v| v["currency"] = json!("eur"))),
        ),
        (
            "no type id",
            Reply::json(200, with(&|v| v["resources"] = json!({}))),
        ),
        (
            "unknown type",
            Reply::json(200, with(&|v| v["resources"]["typeId"] = json!("s-xyz-1"))),
        ),
        (
            "type id junk",
            Reply::json(200, with(&|v| v["resources"]["typeId"] = json!("../.."))),
        ),
        (
            "transactions object",
            Reply::json(200, with(&|v| v["transactions"] = json!({"a": 1}))),
        ),
        (
            "tx amount object",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!({"v": 1})),
            ),
        ),
        (
            "tx amount text",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!("a lot")),
            ),
        ),
        (
            "tx amount 10 decimals",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!(100.0000000001)),
            ),
        ),
        (
            "tx amount 10 decimals text",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!("100.0000000001")),
            ),
        ),
        (
            "tx amount 1e400",
            Reply::json(200, text.replace("\"100.0000\",\"date\"", "1e400,\"date\"")),
        ),
        (
            "tx amount 1e400 text",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!("1e400")),
            ),
        ),
        (
            "tx amount NaN",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!("NaN")),
            ),
        ),
        (
            "tx amount > 28 digits",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["amount"] = json!("123456789012345678901234567890")),
            ),
        ),
        (
            "tx url relative",
            Reply::json(
                200,
                with(&|v| {
                    v["transactions"][0]["url"] = json!("/v1/payments/s-pay-1/authorize/s-aut-1")
                }),
            ),
        ),
        (
            "tx url junk",
            Reply::json(
                200,
                with(&|v| v["transactions"][0]["url"] = json!("not a url")),
            ),
        ),
        (
            "tx url number",
            Reply::json(200, with(&|v| v["transactions"][0]["url"] = json!(5))),
        ),
        (
            "tx type number",
            Reply::json(200, with(&|v| v["transactions"][0]["type"] = json!(1))),
        ),
        (
            "deep nesting",
            Reply::json(
                200,
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ),
        ),
        (
            "error object 200",
            Reply::json(
                200,
                r#"{"isError":true,"errors":[{"code":"API.320.000.004","merchantMessage":"boom"}]}"#,
            ),
        ),
        (
            "error object 200 not found",
            Reply::json(
                200,
                r#"{"isError":true,"errors":[{"code":"API.310.100.003","merchantMessage":"gone"}]}"#,
            ),
        ),
        (
            "error object 200 auth",
            Reply::json(
                200,
                r#"{"isError":true,"errors":[{"code":"API.710.000.002","merchantMessage":"key"}]}"#,
            ),
        ),
        (
            "errors not a list",
            Reply::json(200, r#"{"isError":true,"errors":{"code":"x"}}"#),
        ),
        ("500", Reply::json(500, text.clone())),
        ("302", Reply::json(302, "")),
        ("401 html", Reply::json(401, "<html/>")),
    ];
    for (what, reply) in cases {
        let r = fetch_with(reply).await;
        assert!(r.is_err(), "{what}: {r:?}");
        if what.contains("auth") || what == "401 html" {
            assert!(matches!(r, Err(PspError::Auth(_))), "{what}: {r:?}");
        }
        if what.contains("not found") {
            assert!(matches!(r, Err(PspError::NotFound(_))), "{what}: {r:?}");
        }
        if what == "500" {
            assert!(matches!(r, Err(PspError::Unavailable(_))), "{what}: {r:?}");
        }
        // The error text never carries the private key.
        assert!(!format!("{r:?}").contains(PRIV), "{what}: key in {r:?}");
    }
}

/// Unknown payment states, transaction types and statuses: read as pending / skipped, never as
/// completed or success.
#[tokio::test]
async fn unzer_unknown_states_and_types_are_never_success() {
    let mut v = payment_json("http://127.0.0.1:1", "s-crd-abc");
    v["state"] = json!({"id": 42, "name": "completed"});
    v["transactions"][0]["status"] = json!("SUCCESS");
    v["transactions"]
        .as_array_mut()
        .expect("list")
        .extend([
            json!({"type": "payout", "status": "success", "url": "http://127.0.0.1:1/v1/payments/s-pay-1/payouts/s-out-1", "amount": "5.0000"}),
            json!({"type": "charge", "status": "resumed", "url": "http://127.0.0.1:1/v1/payments/s-pay-1/charges/s-chg-1", "amount": "5.0000"}),
            json!({"type": "charge", "url": "http://127.0.0.1:1/v1/payments/s-pay-1/charges/s-chg-2", "amount": "5.0000"}),
            json!({"type": "Charge", "status": "success", "url": "http://127.0.0.1:1/v1/payments/s-pay-1/charges/s-chg-3", "amount": "5.0000"}),
        ]);
    let p = fetch_with(Reply::json(200, v.to_string()))
        .await
        .expect("readable");
    assert_eq!(p.state, PaymentState::Pending, "unknown state id");
    assert_eq!(
        p.transactions.len(),
        3,
        "payout and 'Charge' skipped: {p:?}"
    );
    assert!(
        p.transactions.iter().all(|t| t.status == TxStatus::Pending),
        "{p:?}"
    );
    let pos = p.position().expect("position");
    assert!(pos.charged.is_zero(), "nothing charged: {pos:?}");
}

/// A JSON number amount goes through `f64`: a value with more precision than a double silently
/// becomes another amount.
#[tokio::test]
async fn unzer_float_amounts_are_not_rounded_through_f64() {
    let text = payment_json("http://127.0.0.1:1", "s-crd-abc")
        .to_string()
        .replace("\"100.0000\",\"date\"", "99.99999999999999999,\"date\"");
    let r = fetch_with(Reply::json(200, text)).await;
    assert!(
        r.is_err(),
        "accepted as {:?}",
        r.map(|p| p.transactions[0].amount)
    );
}

/// A negative transaction amount lowers the charged / refunded sums of the position, so the
/// "Σcaptured ≤ authorized" check before a capture lets through more than was authorized.
#[tokio::test]
async fn unzer_negative_amounts_are_refused() {
    let mut v = payment_json("http://127.0.0.1:1", "s-crd-abc");
    v["transactions"].as_array_mut().expect("list").push(json!({
        "type": "charge", "status": "success",
        "url": "http://127.0.0.1:1/v1/payments/s-pay-1/charges/s-chg-1", "amount": "-50.0000"
    }));
    let r = fetch_with(Reply::json(200, v.to_string())).await;
    assert!(
        r.is_err(),
        "accepted: position {:?}",
        r.map(|p| p.position())
    );
}

/// Money-call replies that are malformed or do not match what we sent: never `Done`.
#[tokio::test]
async fn unzer_execute_never_done_on_malformed_or_mismatched_replies() {
    let ok = capture_reply(json!("10.0000"), "EUR");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = ok.clone();
        f(&mut v);
        v.to_string()
    };
    let text = ok.to_string();
    let cases: Vec<(&str, Reply, bool)> = vec![
        // (what, reply, may it be Declined? otherwise Unknown/Pending is expected)
        ("html 200", Reply::json(200, "<html>ok</html>"), false),
        ("empty 200", Reply::json(200, ""), false),
        (
            "truncated",
            Reply::json(200, text[..text.len() / 2].to_string()),
            false,
        ),
        (
            "amount 10 decimals",
            Reply::json(200, with(&|v| v["amount"] = json!(10.0000000001))),
            false,
        ),
        (
            "amount 10 decimals text",
            Reply::json(200, with(&|v| v["amount"] = json!("10.0000000001"))),
            false,
        ),
        (
            "amount negative",
            Reply::json(200, with(&|v| v["amount"] = json!("-10.0000"))),
            false,
        ),
        (
            "amount more",
            Reply::json(200, with(&|v| v["amount"] = json!("10.0100"))),
            false,
        ),
        (
            "amount missing",
            Reply::json(
                200,
                with(&|v| {
                    v.as_object_mut().expect("obj").remove("amount");
                }),
            ),
            false,
        ),
        (
            "amount junk",
            Reply::json(200, with(&|v| v["amount"] = json!("ten"))),
            false,
        ),
        (
            "amount object",
            Reply::json(200, with(&|v| v["amount"] = json!({"value": 10}))),
            false,
        ),
        (
            "amount 1e400",
            Reply::json(200, text.replace("\"10.0000\"", "1e400")),
            false,
        ),
        (
            "currency usd",
            Reply::json(200, with(&|v| v["currency"] = json!("USD"))),
            false,
        ),
        (
            "currency lower",
            Reply::json(200, with(&|v| v["currency"] = json!("eur"))),
            false,
        ),
        (
            "currency missing",
            Reply::json(
                200,
                with(&|v| {
                    v.as_object_mut().expect("obj").remove("currency");
                }),
            ),
            false,
        ),
        (
            "isSuccess number",
            Reply::json(200, with(&|v| v["isSuccess"] = json!(1))),
            false,
        ),
        (
            "isSuccess yes",
            Reply::json(200, with(&|v| v["isSuccess"] = json!("yes"))),
            false,
        ),
        (
            "isSuccess missing",
            Reply::json(
                200,
                with(&|v| {
                    v.as_object_mut().expect("obj").remove("isSuccess");
                }),
            ),
            false,
        ),
        (
            "id missing",
            Reply::json(
                200,
                with(&|v| {
                    v.as_object_mut().expect("obj").remove("id");
                }),
            ),
            false,
        ),
        (
            "id number",
            Reply::json(200, with(&|v| v["id"] = json!(7))),
            false,
        ),
        (
            "status text only",
            Reply::json(
                200,
                r#"{"id":"s-chg-1","status":"success","amount":"10.0000","currency":"EUR"}"#,
            ),
            false,
        ),
        (
            "success and error",
            Reply::json(200, with(&|v| v["isError"] = json!(true))),
            true,
        ),
        (
            "2xx error object",
            Reply::json(
                200,
                with(&|v| {
                    v["errors"] = json!([{"code": "API.330.100.007", "merchantMessage": "no"}])
                }),
            ),
            true,
        ),
        (
            "201 error object",
            Reply::json(
                201,
                r#"{"isError":true,"errors":[{"code":"COR.100.100.100","merchantMessage":"declined"}]}"#,
            ),
            true,
        ),
        (
            "errors wrong type",
            Reply::json(200, with(&|v| v["errors"] = json!("boom"))),
            false,
        ),
        (
            "deep nesting",
            Reply::json(
                200,
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ),
            false,
        ),
        (
            "gigantic",
            Reply::json(200, {
                let mut b = vec![b' '; 24 << 20];
                b.extend_from_slice(text.as_bytes());
                b.extend_from_slice(b"x");
                b
            }),
            false,
        ),
        ("302 to foreign", Reply::json(302, ""), true),
        ("500 success body", Reply::json(500, text.clone()), false),
        ("408", Reply::json(408, ""), false),
    ];
    for (what, reply, may_decline) in cases {
        let started = Instant::now();
        let out = capture_with(reply).await;
        assert!(!is_done(&out), "{what}: {out:?}");
        match &out {
            PspOutcome::Unknown { .. } | PspOutcome::Pending { .. } => {}
            PspOutcome::Declined { .. } if may_decline => {}
            other => panic!("{what}: expected Unknown (or Declined), got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
    }
}

/// A reply that reports success but names a transaction id that is not an Unzer id: the id is
/// stored in the ledger and used in later calls, so it must not be taken as `Done`.
#[tokio::test]
async fn unzer_done_only_with_a_valid_transaction_id() {
    for id in ["../../keypair", "s-chg-1/../../x", "", "s-chg-1?x"] {
        let mut v = capture_reply(json!("10.0000"), "EUR");
        v["id"] = json!(id);
        let out = capture_with(Reply::json(200, v.to_string())).await;
        assert!(!is_done(&out), "{id:?}: {out:?}");
    }
}

/// Transaction urls on another host, under another payment, with `..`, encoded slashes or a
/// query: refused, and nothing is ever sent to the other host or outside the payment.
#[tokio::test]
async fn unzer_transaction_urls_elsewhere_are_never_followed() {
    let srv = Crafted::start().await;
    let foreign = Crafted::start().await;
    foreign.respond(|_| Reply::json(200, r#"{"id":"s-chg-1","isSuccess":true}"#));
    let cfg = account(&srv.base);
    let urls = [
        format!("{}/v1/payments/{PID}/charges/s-chg-1", foreign.base),
        format!("{}/v1/payments/s-pay-OTHER/charges/s-chg-1", srv.base),
        format!(
            "{}/v1/payments/{PID}/../../v1/keypair/charges/s-chg-1",
            srv.base
        ),
        format!(
            "{}/v1/payments/{PID}/charges/s-chg-1%2F..%2F..%2Fkeypair",
            srv.base
        ),
        format!(
            "{}/v1/payments/{PID}/charges/s-chg-1?next={}",
            srv.base, foreign.base
        ),
        format!("https://sbx-api.unzer.com/v1/payments/{PID}/charges/s-chg-1"),
        format!(
            "http://user:pw@{}/v1/payments/{PID}/charges/s-chg-1",
            foreign.base.trim_start_matches("http://")
        ),
        format!("file:///v1/payments/{PID}/charges/s-chg-1"),
    ];
    for url in &urls {
        // Prepayment: `fetch` reads the initial charge for the transfer details.
        let mut prepay = payment_json(&srv.base, "s-ppy-abc");
        prepay["transactions"] = json!([
            {"type": "charge", "status": "pending", "url": url, "amount": "100.0000"}
        ]);
        serve_payment(&srv, prepay, Reply::json(500, "{}"));
        srv.clear();
        let r = no_panic("fetch", {
            let cfg = cfg.clone();
            async move { unzer().fetch(&cfg, PID).await }
        })
        .await;
        assert!(r.is_err(), "{url}: {r:?}");
        assert_only_our_payment(&srv);

        // Card: reconciliation of a capture and a spread refund read the transactions.
        let mut card = payment_json(&srv.base, "s-crd-abc");
        card["transactions"].as_array_mut().expect("list").extend([
            json!({"type": "charge", "status": "success", "url": url, "amount": "10.0000"}),
            json!({"type": "cancel-charge", "status": "success", "url": url, "amount": "1.0000"}),
        ]);
        serve_payment(&srv, card, Reply::json(500, "{}"));
        let out = no_panic("reconcile", {
            let cfg = cfg.clone();
            async move {
                let psp = unzer();
                let p = psp.fetch(&cfg, PID).await?;
                let capture = PspCall::Capture { amount: eur(1000) };
                let found = psp.find_transaction(&cfg, &p, &capture, "ref-1").await;
                let refund = PspCall::Refund {
                    amount: eur(500),
                    reason: RefundReason::Return,
                };
                let refunded = psp.execute(&cfg, &p, &refund, "ref-2").await;
                Ok::<_, PspError>((found, refunded))
            }
        })
        .await;
        match out {
            Err(e) => panic!("{url}: the card payment should be readable: {e}"),
            Ok((found, refunded)) => {
                assert!(
                    found.is_err(),
                    "{url}: reconciliation followed it: {found:?}"
                );
                assert!(!is_done(&refunded), "{url}: {refunded:?}");
            }
        }
        assert_only_our_payment(&srv);
        assert!(
            srv.requests().iter().all(|r| r.method == "GET"),
            "{url}: a money call was sent after an unreadable transaction: {:?}",
            srv.requests()
        );
    }
    assert!(
        foreign.requests().is_empty(),
        "the foreign host was contacted: {:?}",
        foreign.requests()
    );
}

/// Payment ids that are not Unzer ids never reach a URL.
#[tokio::test]
async fn unzer_hostile_payment_ids_send_nothing() {
    let srv = Crafted::start().await;
    serve_payment(
        &srv,
        payment_json(&srv.base, "s-crd-abc"),
        Reply::json(500, "{}"),
    );
    let cfg = account(&srv.base);
    let psp = unzer();
    for id in [
        "../keypair",
        "s-pay-1/../../x",
        "s-pay-1%2F..",
        "s-pay-1?x=1",
        "",
        "s-pay-1\n",
        &"a".repeat(65),
    ] {
        let r = psp.fetch(&cfg, id).await;
        assert!(matches!(r, Err(PspError::NotFound(_))), "{id:?}: {r:?}");
    }
    assert!(srv.requests().is_empty(), "{:?}", srv.requests());
}

/// The simulator's own faults: a reply showing another amount or currency than was charged.
#[tokio::test]
async fn unzer_simulator_mismatched_replies_are_unknown() {
    let sim = UnzerSim::start().await;
    sim.add_keypair(PUB, PRIV);
    let cfg = account(&sim.base_url());
    let psp = unzer();
    for fault in [
        Fault::ReplyAmount("10.0000000001".into()),
        Fault::ReplyAmount("-10.0000".into()),
        Fault::ReplyAmount("1e400".into()),
        Fault::ReplyAmount("10.01".into()),
        Fault::ReplyCurrency("USD".into()),
        Fault::ReplyCurrency("".into()),
    ] {
        let pid = sim.authorized(PUB, "crd", "EUR", "100.00");
        let p = psp.fetch(&cfg, &pid).await.expect("fetch");
        sim.inject(fault.clone(), 1);
        let out = psp
            .execute(&cfg, &p, &PspCall::Capture { amount: eur(1000) }, "ref-sim")
            .await;
        assert!(
            matches!(out, PspOutcome::Unknown { .. }),
            "{fault:?}: {out:?}"
        );
    }
}

/// Random mutations of a valid payment reply: `fetch` never panics, and what it accepts is our
/// payment with amounts in its currency.
#[test]
fn unzer_fetch_survives_random_mutations() {
    let rt = multi_thread_rt();
    let srv = rt.block_on(Crafted::start());
    let base = srv.base.clone();
    let valid = payment_json(&base, "s-crd-abc").to_string();
    let body: Arc<Mutex<String>> = Arc::new(Mutex::new(valid.clone()));
    let b = Arc::clone(&body);
    srv.respond(move |_| Reply::json(200, b.lock().unwrap_or_else(|p| p.into_inner()).clone()));
    let cfg = account(&base);
    fuzz("unzer fetch", 300, |rng| {
        let text = mutate(&valid, rng, 5);
        *body.lock().unwrap_or_else(|p| p.into_inner()) = text.clone();
        let cfg = cfg.clone();
        let r = rt.block_on(no_panic(
            "fetch",
            async move { unzer().fetch(&cfg, PID).await },
        ));
        if let Ok(p) = r {
            check(p.payment_id == PID, || format!("other payment from {text}"))?;
            for t in &p.transactions {
                check(t.amount.currency() == p.currency, || {
                    format!("currency mix in {text}")
                })?;
            }
        }
        Ok(())
    });
    assert_only_our_payment(&srv);
}

/// Random mutations of a valid capture reply: `Done` only when the mutated reply still says
/// success with exactly 10.00 EUR, no error, and a transaction id.
#[test]
fn unzer_execute_done_only_for_a_matching_success() {
    let rt = multi_thread_rt();
    let srv = rt.block_on(Crafted::start());
    let base = srv.base.clone();
    let valid = capture_reply(json!("10.0000"), "EUR").to_string();
    let post: Arc<Mutex<String>> = Arc::new(Mutex::new(valid.clone()));
    let payment = payment_json(&base, "s-crd-abc").to_string();
    let p2 = Arc::clone(&post);
    srv.respond(move |seen| {
        if seen.method == "GET" {
            Reply::json(200, payment.clone())
        } else {
            Reply::json(200, p2.lock().unwrap_or_else(|p| p.into_inner()).clone())
        }
    });
    let cfg = account(&base);
    let psp = Arc::new(unzer());
    let fetched = rt.block_on(psp.fetch(&cfg, PID)).expect("valid payment");
    fuzz("unzer execute", 300, |rng| {
        let text = mutate(&valid, rng, 4);
        *post.lock().unwrap_or_else(|p| p.into_inner()) = text.clone();
        let (cfg, psp, p) = (cfg.clone(), Arc::clone(&psp), fetched.clone());
        let out = rt.block_on(no_panic("execute", async move {
            psp.execute(&cfg, &p, &PspCall::Capture { amount: eur(1000) }, "ref-1")
                .await
        }));
        if !is_done(&out) {
            return Ok(());
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("Done from unreadable JSON ({e}): {text}"))?;
        let amount = match &v["amount"] {
            Value::String(s) => s.trim().parse::<rust_decimal::Decimal>().ok(),
            Value::Number(n) => n.to_string().parse::<rust_decimal::Decimal>().ok(),
            _ => None,
        };
        check(
            amount.map(|d| d.normalize()) == Some(rust_decimal::Decimal::TEN),
            || format!("Done with amount {amount:?}: {text}"),
        )?;
        check(v["currency"].as_str() == Some("EUR"), || {
            format!("Done with currency: {text}")
        })?;
        let success = &v["isSuccess"];
        check(
            success == &json!(true)
                || success
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            || format!("Done without isSuccess: {text}"),
        )?;
        check(v["errors"].as_array().is_none_or(Vec::is_empty), || {
            format!("Done with errors: {text}")
        })?;
        check(v["isError"] != json!(true), || {
            format!("Done with isError: {text}")
        })?;
        check(v["id"].is_string(), || format!("Done without id: {text}"))
    });
    assert_only_our_payment(&srv);
}

// ------------------------------------------------------------------------------------- pixi ---

const NS: &str = concat!(
    r#"xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
    r#"xmlns:sqlresultstream="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlResultStream" "#,
    r#"xmlns:sqlmessage="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlMessage" "#,
    r#"xmlns:method="https://pixi.example/soap/""#
);

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A `SqlRowSet` with these rows (column, value), as SQL Server native web services write it.
fn rowset(rows: &[Vec<(&str, &str)>]) -> String {
    let mut s = String::from(
        r#"<sqlresultstream:SqlRowSet><xsd:schema targetNamespace="urn:schemas-microsoft-com:sql:SqlRowSet1"/><diffgr:diffgram xmlns:diffgr="urn:schemas-microsoft-com:xml-diffgram-v1"><SqlRowSet1 xmlns="urn:schemas-microsoft-com:sql:SqlRowSet1">"#,
    );
    for row in rows {
        s.push_str("<row>");
        for (k, v) in row {
            s.push_str(&format!("<{k}>{}</{k}>", esc(v)));
        }
        s.push_str("</row>");
    }
    s.push_str("</SqlRowSet1></diffgr:diffgram></sqlresultstream:SqlRowSet>");
    s
}

fn code(c: &str) -> String {
    format!("<sqlresultstream:SqlResultCode>{c}</sqlresultstream:SqlResultCode>")
}

fn envelope(call: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xml:space="preserve" {NS}><SOAP-ENV:Body><method:{call}Response><method:{call}Result>{inner}</method:{call}Result></method:{call}Response></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    )
}

fn reply(call: &str, rows: &[Vec<(&str, &str)>]) -> String {
    envelope(call, &format!("{}{}", rowset(rows), code("0")))
}

/// Result rows: each a list of (column, value).
type Rows = Vec<Vec<(&'static str, &'static str)>>;

fn header_rows() -> Rows {
    vec![vec![
        ("OrderNr", "7"),
        ("OrderNrExternal", "S-7"),
        ("ShopID", "01"),
        ("CustKey", "70"),
        ("AddrRef", "71"),
        ("PaymentType", "UNZ"),
        ("ccpPayID", "s-pay-7"),
        ("OrderStatus", "HOLD"),
        ("OrderCurrency", "EUR"),
        ("OrderLocked", "N"),
    ]]
}

fn line_rows() -> Rows {
    vec![
        vec![
            ("OrderlineKey", "1"),
            ("OrderNr", "7"),
            ("Status", "HAL"),
            ("Qty", "2"),
            ("Price", "10.5000"),
            ("Price_OrderCurr", "10.5000"),
            ("OrderCurrency", "EUR"),
        ],
        vec![
            ("OrderlineKey", "2"),
            ("OrderNr", "7"),
            ("Status", "HAL"),
            ("Qty", "1"),
            ("Price", "4.9500"),
            ("Price_OrderCurr", "4.9500"),
            ("OrderCurrency", "EUR"),
        ],
    ]
}

fn total_rows() -> Rows {
    vec![vec![
        ("OrderNr", "7"),
        ("ShipCost", "0.0000"),
        ("Subtotal", "25.9500"),
        ("Total", "25.9500"),
        ("OrderCurrency", "EUR"),
    ]]
}

/// The valid reply of each read call for order 7.
fn valid_pixi(call: &str) -> String {
    match call {
        "pixiGetOrderHeader" => reply(call, &header_rows()),
        "pixiGetOrderline" => reply(call, &line_rows()),
        "pixiGetOrderTotals" => reply(call, &total_rows()),
        "pixiGetInvoice" => reply(call, &[]),
        // A pixi without the batch call (it is not in the seed's list of installed calls): the
        // connector reads per order, which the crafted replies of these tests target.
        "pixiGetOrder" => NO_GET_ORDER.to_string(),
        other => reply(other, &[]),
    }
}

/// The fault SQL Server answers for a procedure it does not have (error 2812 wording).
const NO_GET_ORDER: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Could not find stored procedure 'pixiGetOrder'.</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

/// Order 7 as the valid replies map it.
fn order7() -> ErpOrder {
    ErpOrder {
        order_id: "7".into(),
        mandant: "01".into(),
        shop_order_no: "S-7".into(),
        psp_payment_id: Some("s-pay-7".into()),
        payment_method: "UNZ".into(),
        status: OrderStatus::Hold,
        total: eur(2595),
        lines: vec![
            paybridge_core::erp::memory::line("1", LineStatus::Open, eur(2100)),
            paybridge_core::erp::memory::line("2", LineStatus::Open, eur(495)),
        ],
        shipping_lock: false,
        invoices: vec![],
        credit_notes: vec![],
        // CustKey of the valid header row.
        customer_key: Some("70".into()),
    }
}

fn pixi(base: &str) -> PixiErp {
    PixiErp::new(
        &format!("{base}/soap"),
        "pixiAPP",
        Secret::new("pixi-password"),
        vec!["UNZ".into()],
        PixiTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(10),
        },
    )
    .expect("connector")
}

/// Serves the valid replies except `call`, which answers `(status, body)`.
async fn pixi_with(call: &'static str, status: u16, body: String) -> Crafted {
    let srv = Crafted::start().await;
    srv.respond(move |seen| {
        let c = seen.call.clone().unwrap_or_default();
        if c == call {
            Reply::xml(status, body.clone())
        } else {
            Reply::xml(200, valid_pixi(&c))
        }
    });
    srv
}

async fn read_order7(srv: &Crafted) -> Result<Vec<ErpOrder>, ErpError> {
    let erp = pixi(&srv.base);
    no_panic(
        "orders",
        async move { erp.orders(&["7".to_string()]).await },
    )
    .await
}

#[tokio::test]
async fn pixi_valid_reply_baseline() {
    let srv = pixi_with("none", 200, String::new()).await;
    assert_eq!(read_order7(&srv).await, Ok(vec![order7()]));
}

fn billion_laughs() -> String {
    let mut s = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        s.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    s.push_str("]><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><x>&lol9;</x></SOAP-ENV:Body></SOAP-ENV:Envelope>");
    s
}

#[tokio::test]
async fn pixi_unparsable_replies_are_bad_reply() {
    let deep = format!(
        "<SOAP-ENV:Envelope {NS}><SOAP-ENV:Body><method:xResponse><method:xResult>{}{}</method:xResult></method:xResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>",
        "<a>".repeat(200_000),
        "</a>".repeat(200_000)
    );
    let cases: Vec<(&str, &'static str, String)> = vec![
        (
            "html",
            "pixiGetOrderHeader",
            "<html><body>Bad Gateway</body></html>".into(),
        ),
        ("text", "pixiGetOrderline", "OK".into()),
        ("empty", "pixiGetOrderTotals", String::new()),
        ("json", "pixiGetInvoice", "{\"rows\":[]}".into()),
        ("truncated", "pixiGetOrderHeader", {
            let v = valid_pixi("pixiGetOrderHeader");
            v[..v.len() / 2].to_string()
        }),
        ("billion laughs", "pixiGetOrderHeader", billion_laughs()),
        (
            "external entity",
            "pixiGetOrderline",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
                valid_pixi("pixiGetOrderline")
                    .replace("10.5000", "&xxe;")
                    .replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>", "")
            ),
        ),
        (
            "no body",
            "pixiGetOrderHeader",
            format!("<SOAP-ENV:Envelope {NS}></SOAP-ENV:Envelope>"),
        ),
        (
            "empty body",
            "pixiGetOrderHeader",
            format!("<SOAP-ENV:Envelope {NS}><SOAP-ENV:Body/></SOAP-ENV:Envelope>"),
        ),
        (
            "not an envelope",
            "pixiGetOrderHeader",
            "<Envelop><Body/></Envelop>".into(),
        ),
        (
            "code not a number",
            "pixiGetOrderTotals",
            envelope(
                "pixiGetOrderTotals",
                &format!("{}{}", rowset(&total_rows()), code("zero")),
            ),
        ),
        (
            "code too big",
            "pixiGetOrderTotals",
            envelope(
                "pixiGetOrderTotals",
                &format!(
                    "{}{}",
                    rowset(&total_rows()),
                    code("99999999999999999999999")
                ),
            ),
        ),
        (
            "latin-1 bytes",
            "pixiGetOrderHeader",
            String::from_utf8_lossy(b"<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><a>\xe4</a>")
                .into_owned(),
        ),
    ];
    // 200,000 nested elements inside the result: parsed without recursion; no row set, so no
    // order (see `pixi_header_reply_without_rowset_is_bad_reply`).
    let srv = pixi_with("pixiGetOrderHeader", 200, deep).await;
    let started = Instant::now();
    let r = read_order7(&srv).await;
    assert!(
        matches!(r, Ok(ref v) if v.is_empty()) || matches!(r, Err(ErpError::BadReply(_))),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for (what, call, body) in cases {
        let srv = pixi_with(call, 200, body).await;
        let started = Instant::now();
        let r = read_order7(&srv).await;
        assert!(matches!(r, Err(ErpError::BadReply(_))), "{what}: {r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(
            !format!("{r:?}").contains("root:"),
            "{what}: file content in {r:?}"
        );
    }
}

#[tokio::test]
async fn pixi_faults_and_refusals_are_refused() {
    let soap11 = format!(
        "<SOAP-ENV:Envelope {NS}><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Procedure expects parameter</faultstring><detail><sqlmessage:SqlMessage><sqlmessage:Class>16</sqlmessage:Class><sqlmessage:Message>Invalid OrderNr</sqlmessage:Message></sqlmessage:SqlMessage></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    );
    let soap12 = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value></env:Code><env:Reason><env:Text xml:lang="en">rejected by policy</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#.to_string();
    let sql_error = envelope(
        "pixiGetOrderline",
        &format!(
            "<sqlresultstream:SqlMessage><sqlmessage:Class>16</sqlmessage:Class><sqlmessage:Message>deadlock victim</sqlmessage:Message></sqlresultstream:SqlMessage>{}",
            code("1")
        ),
    );
    let negative = envelope(
        "pixiGetOrderTotals",
        &format!("{}{}", rowset(&total_rows()), code("-1")),
    );
    let return_error = reply(
        "pixiGetOrderTotals",
        &[vec![
            ("ReturnCode", "ERROR"),
            ("ErrorMessage", "order locked"),
        ]],
    );
    let cases: Vec<(&str, &'static str, u16, String, &str)> = vec![
        (
            "soap 1.1 fault 500",
            "pixiGetOrderHeader",
            500,
            soap11.clone(),
            "Invalid OrderNr",
        ),
        (
            "soap 1.1 fault 200",
            "pixiGetOrderline",
            200,
            soap11,
            "Procedure expects parameter",
        ),
        (
            "soap 1.2 fault 500",
            "pixiGetOrderHeader",
            500,
            soap12.clone(),
            "rejected by policy",
        ),
        (
            "soap 1.2 fault 200",
            "pixiGetInvoice",
            200,
            soap12,
            "rejected by policy",
        ),
        (
            "sql error",
            "pixiGetOrderline",
            200,
            sql_error,
            "deadlock victim",
        ),
        (
            "negative result code",
            "pixiGetOrderTotals",
            200,
            negative,
            "SqlResultCode -1",
        ),
        (
            "ReturnCode ERROR",
            "pixiGetOrderTotals",
            200,
            return_error,
            "order locked",
        ),
        (
            "valid reply with 400",
            "pixiGetOrderHeader",
            400,
            valid_pixi("pixiGetOrderHeader"),
            "400",
        ),
    ];
    for (what, call, status, body, needle) in cases {
        let srv = pixi_with(call, status, body).await;
        let r = read_order7(&srv).await;
        match &r {
            Err(ErpError::Refused(m)) => assert!(m.contains(needle), "{what}: {m}"),
            other => panic!("{what}: expected Refused, got {other:?}"),
        }
    }
}

/// Rows with missing columns or garbage money: BadReply, never a half-mapped order.
#[tokio::test]
async fn pixi_missing_columns_and_garbage_money_are_bad_reply() {
    let lines_with = |f: &dyn Fn(&mut Rows)| {
        let mut rows = line_rows();
        f(&mut rows);
        reply("pixiGetOrderline", &rows)
    };
    let set = |rows: &mut Rows, col: &'static str, v: &'static str| {
        for (k, val) in rows[0].iter_mut() {
            if *k == col {
                *val = v;
            }
        }
    };
    let mut cases: Vec<(String, &'static str, String)> = vec![
        (
            "line without key".into(),
            "pixiGetOrderline",
            lines_with(&|r| r[0].retain(|(k, _)| *k != "OrderlineKey")),
        ),
        (
            "line without price".into(),
            "pixiGetOrderline",
            lines_with(&|r| r[0].retain(|(k, _)| !k.starts_with("Price"))),
        ),
        (
            "no totals row".into(),
            "pixiGetOrderTotals",
            reply("pixiGetOrderTotals", &[]),
        ),
        (
            "totals without Total/Subtotal".into(),
            "pixiGetOrderTotals",
            reply("pixiGetOrderTotals", &[vec![("OrderNr", "7")]]),
        ),
        (
            "unknown currency".into(),
            "pixiGetOrderHeader",
            reply(
                "pixiGetOrderHeader",
                &[header_rows()[0]
                    .iter()
                    .map(|&(k, v)| {
                        if k == "OrderCurrency" {
                            (k, "XXX")
                        } else {
                            (k, v)
                        }
                    })
                    .collect()],
            ),
        ),
        (
            "invoice in USD".into(),
            "pixiGetInvoice",
            reply(
                "pixiGetInvoice",
                &[vec![
                    ("InvoiceKey", "1"),
                    ("InvoiceNr", "R1"),
                    ("OrderNr", "7"),
                    ("Total", "25.9500"),
                    ("OrderCurrency", "USD"),
                ]],
            ),
        ),
        (
            "invoice without total".into(),
            "pixiGetInvoice",
            reply(
                "pixiGetInvoice",
                &[vec![
                    ("InvoiceKey", "1"),
                    ("InvoiceNr", "R1"),
                    ("OrderNr", "7"),
                ]],
            ),
        ),
        (
            "invoice total with 3 decimals".into(),
            "pixiGetInvoice",
            reply(
                "pixiGetInvoice",
                &[vec![
                    ("InvoiceKey", "1"),
                    ("InvoiceNr", "R1"),
                    ("OrderNr", "7"),
                    ("Total", "25.955"),
                ]],
            ),
        ),
        (
            "invoice paid garbage".into(),
            "pixiGetInvoice",
            reply(
                "pixiGetInvoice",
                &[vec![
                    ("InvoiceKey", "1"),
                    ("InvoiceNr", "R1"),
                    ("OrderNr", "7"),
                    ("Total", "25.95"),
                    ("PaidAmount", "lots"),
                ]],
            ),
        ),
    ];
    for garbage in [
        "abc",
        "1e400",
        "NaN",
        "-",
        "",
        "1,50",
        "１０",
        "0x10",
        "12.34.56",
        "123456789012345678901234567890",
    ] {
        cases.push((
            format!("price {garbage:?}"),
            "pixiGetOrderline",
            lines_with(&|r| {
                set(r, "Price", garbage);
                set(r, "Price_OrderCurr", garbage);
            }),
        ));
        cases.push((
            format!("qty {garbage:?}"),
            "pixiGetOrderline",
            lines_with(&|r| set(r, "Qty", garbage)),
        ));
        cases.push((
            format!("total {garbage:?}"),
            "pixiGetOrderTotals",
            reply(
                "pixiGetOrderTotals",
                &[vec![("OrderNr", "7"), ("Total", garbage)]],
            ),
        ));
    }
    cases.push((
        "total 3 decimals".into(),
        "pixiGetOrderTotals",
        reply(
            "pixiGetOrderTotals",
            &[vec![("OrderNr", "7"), ("Total", "25.955")]],
        ),
    ));
    for (what, call, body) in cases {
        let srv = pixi_with(call, 200, body).await;
        let r = read_order7(&srv).await;
        // An empty value is SQL NULL: Qty NULL counts as 1, a NULL total falls back to Subtotal.
        let null_ok = what == "qty \"\"";
        if null_ok {
            assert!(r.is_ok(), "{what}: {r:?}");
            continue;
        }
        assert!(matches!(r, Err(ErpError::BadReply(_))), "{what}: {r:?}");
    }
}

/// `Price × Qty` of two in-range decimals overflows `Decimal` and panics inside `map_order`.
#[tokio::test]
async fn pixi_price_times_qty_overflow_is_bad_reply() {
    let mut rows = line_rows();
    for (k, v) in rows[0].iter_mut() {
        match *k {
            "Price" | "Price_OrderCurr" => *v = "79228162514264337593543950",
            "Qty" => *v = "100000",
            _ => {}
        }
    }
    let srv = pixi_with("pixiGetOrderline", 200, reply("pixiGetOrderline", &rows)).await;
    let r = read_order7(&srv).await;
    assert!(matches!(r, Err(ErpError::BadReply(_))), "{r:?}");
}

/// Line and invoice rows carry the order number they belong to; rows of another order must not
/// become this order's lines.
#[tokio::test]
async fn pixi_rows_of_another_order_are_not_mapped() {
    let mut rows = line_rows();
    for row in rows.iter_mut() {
        for (k, v) in row.iter_mut() {
            if *k == "OrderNr" {
                *v = "8";
            }
        }
    }
    let srv = pixi_with("pixiGetOrderline", 200, reply("pixiGetOrderline", &rows)).await;
    let r = read_order7(&srv).await;
    assert!(r.is_err(), "lines of order 8 mapped to 7: {r:?}");
}

/// A header reply without any `SqlRowSet` (SQL Server sends an empty row set for "no rows") reads
/// as "no such order": the poller then skips the order and advances its watermark past it.
#[tokio::test]
async fn pixi_header_reply_without_rowset_is_bad_reply() {
    for body in [
        envelope("pixiGetOrderHeader", ""),
        envelope("pixiGetOrderHeader", &code("0")),
        envelope("pixiGetOrderHeader", "<return>OK</return>"),
    ] {
        let srv = pixi_with("pixiGetOrderHeader", 200, body.clone()).await;
        let r = read_order7(&srv).await;
        assert!(matches!(r, Err(ErpError::BadReply(_))), "{body}: {r:?}");
    }
}

/// Valid but odd shapes: the mapped order is exactly order 7.
#[tokio::test]
async fn pixi_odd_but_valid_replies_map_exactly() {
    let header = header_rows();
    let mut other = header[0].clone();
    for (k, v) in other.iter_mut() {
        match *k {
            "OrderNr" => *v = "8",
            "ccpPayID" => *v = "s-pay-8",
            "ShopID" => *v = "99",
            _ => {}
        }
    }
    let padded: Vec<(&str, &str)> = header[0]
        .iter()
        .map(|&(k, v)| match k {
            "OrderNr" => (k, " 7 "),
            "ccpPayID" => (k, "s-pay-7   "),
            "OrderCurrency" => (k, "eur"),
            _ => (k, v),
        })
        .collect();
    let lines = line_rows();
    let attrs_and_namespaces = envelope(
        "pixiGetOrderline",
        &format!(
            "<sqlresultstream:SqlRowSet><diffgr:diffgram xmlns:diffgr=\"urn:schemas-microsoft-com:xml-diffgram-v1\"><SqlRowSet1 xmlns=\"urn:s\"><row OrderlineKey=\"1\" Extra=\"x\"><x:Status xmlns:x=\"urn:x\">HAL</x:Status><Qty>2</Qty><Price><![CDATA[10.5000]]></Price><Unknown><Nested>z</Nested></Unknown></row><row><OrderlineKey>2</OrderlineKey><Status>hal</Status><Qty>1</Qty><Price>4.9<!-- c -->500</Price><Price_OrderCurr>&#52;.9500</Price_OrderCurr></row></SqlRowSet1></diffgr:diffgram></sqlresultstream:SqlRowSet>{}",
            code("0")
        ),
    );
    let cases: Vec<(&str, &'static str, String)> = vec![
        (
            "multi-row header, other order first",
            "pixiGetOrderHeader",
            reply("pixiGetOrderHeader", &[other.clone(), header[0].clone()]),
        ),
        (
            "multi-row header, other order last",
            "pixiGetOrderHeader",
            reply("pixiGetOrderHeader", &[header[0].clone(), other]),
        ),
        (
            "padded values, lower-case currency",
            "pixiGetOrderHeader",
            reply("pixiGetOrderHeader", &[padded]),
        ),
        (
            "currency only on other replies",
            "pixiGetOrderHeader",
            reply(
                "pixiGetOrderHeader",
                &[header_rows()[0]
                    .iter()
                    .copied()
                    .filter(|(k, _)| *k != "OrderCurrency")
                    .collect()],
            ),
        ),
        (
            "extra columns",
            "pixiGetOrderHeader",
            reply(
                "pixiGetOrderHeader",
                &[header[0]
                    .iter()
                    .copied()
                    .chain([("Weird", "<&>"), ("Nr", "8")])
                    .collect()],
            ),
        ),
        (
            "no SqlResultCode",
            "pixiGetOrderline",
            envelope("pixiGetOrderline", &rowset(&lines)),
        ),
        (
            "two result sets",
            "pixiGetOrderTotals",
            envelope(
                "pixiGetOrderTotals",
                &format!(
                    "{}{}{}",
                    rowset(&total_rows()),
                    rowset(&[vec![("Total", "999.99")]]),
                    code("0")
                ),
            ),
        ),
        (
            "attributes, namespaces, CDATA, comments, char refs",
            "pixiGetOrderline",
            attrs_and_namespaces,
        ),
        (
            "CRLF and blanks",
            "pixiGetOrderTotals",
            valid_pixi("pixiGetOrderTotals").replace("><", ">\r\n  <"),
        ),
        (
            "no Result wrapper",
            "pixiGetOrderTotals",
            format!(
                "<SOAP-ENV:Envelope {NS}><SOAP-ENV:Body><method:pixiGetOrderTotalsResponse>{}{}</method:pixiGetOrderTotalsResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>",
                rowset(&total_rows()),
                code("0")
            ),
        ),
        (
            "INFO return code",
            "pixiGetOrderTotals",
            reply(
                "pixiGetOrderTotals",
                &[total_rows()[0]
                    .iter()
                    .copied()
                    .chain([("ReturnCode", "INFO"), ("ErrorMessage", "fyi")])
                    .collect()],
            ),
        ),
        (
            "informational SqlMessage",
            "pixiGetOrderTotals",
            envelope(
                "pixiGetOrderTotals",
                &format!(
                    "{}<sqlresultstream:SqlMessage><sqlmessage:Class>0</sqlmessage:Class><sqlmessage:Message>note</sqlmessage:Message></sqlresultstream:SqlMessage>{}",
                    rowset(&total_rows()),
                    code("0")
                ),
            ),
        ),
    ];
    for (what, call, body) in cases {
        let srv = pixi_with(call, 200, body).await;
        let r = read_order7(&srv).await;
        assert_eq!(r, Ok(vec![order7()]), "{what}");
    }
    // A header reply without order 7: the order is left out, never another order mapped.
    let mut only8 = header_rows()[0].clone();
    only8[0].1 = "8";
    let srv = pixi_with(
        "pixiGetOrderHeader",
        200,
        reply("pixiGetOrderHeader", &[only8]),
    )
    .await;
    assert_eq!(read_order7(&srv).await, Ok(vec![]));
    // Odd money: 10 decimals on a unit price round per line to the cent.
    let mut odd = line_rows();
    odd[0] = vec![
        ("OrderlineKey", "1"),
        ("Status", "AUS"),
        ("Qty", "3"),
        ("Price_OrderCurr", "0.3333333333"),
    ];
    let srv = pixi_with("pixiGetOrderline", 200, reply("pixiGetOrderline", &odd)).await;
    let o = read_order7(&srv).await.expect("odd prices");
    assert_eq!(o[0].lines[0].amount, eur(100));
    assert_eq!(o[0].lines[0].status, LineStatus::Shipped);
}

#[tokio::test]
async fn pixi_huge_replies_do_not_panic_or_hang() {
    let many_rows: Vec<Vec<(&str, &str)>> = (0..100_000)
        .map(|_| vec![("OrderNr", "8"), ("OrderCurrency", "EUR")])
        .collect();
    let big_value = "x".repeat(32 << 20);
    let cases: Vec<(&str, &'static str, String)> = vec![
        (
            "100k header rows",
            "pixiGetOrderHeader",
            reply("pixiGetOrderHeader", &many_rows),
        ),
        (
            "32 MB column",
            "pixiGetOrderHeader",
            reply(
                "pixiGetOrderHeader",
                &[header_rows()[0]
                    .iter()
                    .copied()
                    .chain([("Note", big_value.as_str())])
                    .collect()],
            ),
        ),
        (
            "32 MB of blanks",
            "pixiGetOrderTotals",
            format!(
                "{}{}",
                " ".repeat(32 << 20),
                valid_pixi("pixiGetOrderTotals")
                    .replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>", "")
            ),
        ),
    ];
    for (what, call, body) in cases {
        let srv = pixi_with(call, 200, body).await;
        let started = Instant::now();
        let r = read_order7(&srv).await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        match what {
            "100k header rows" => assert_eq!(r, Ok(vec![])),
            _ => assert_eq!(r, Ok(vec![order7()]), "{what}"),
        }
    }
}

/// The work lists and a write against hostile replies: no panic, only integer order numbers.
#[tokio::test]
async fn pixi_changes_and_writes_against_hostile_replies() {
    let srv = Crafted::start().await;
    srv.respond(|seen| {
        let c = seen.call.clone().unwrap_or_default();
        Reply::xml(
            200,
            reply(
                &c,
                &[
                    vec![
                        ("OrderNr", "12"),
                        ("PaymentType", "UNZ"),
                        ("DateTimeTo", "2026-01-01T10:00:00"),
                    ],
                    vec![("OrderNr", "../13"), ("PaymentType", "UNZ")],
                    vec![("OrderNr", "1e3"), ("PaymentType", "UNZ")],
                    vec![("OrderNr", "99999999999999999999"), ("PaymentType", "UNZ")],
                    vec![("OrderNr", "14"), ("PaymentType", "OTHER")],
                    vec![("PaymentType", "UNZ")],
                ],
            ),
        )
    });
    let erp = pixi(&srv.base);
    let ch = no_panic("changes", async move { erp.changes(None).await })
        .await
        .expect("changes");
    // Rows of the work lists are per payment code already; only parseable numbers get through.
    assert_eq!(ch.order_ids, vec!["12".to_string(), "14".to_string()]);
    assert_eq!(ch.watermark, "2026-01-01 10:00:00");
    // A write answered with ERROR or garbage.
    for (body, refused) in [
        (
            reply(
                "pixiAddOrderComment",
                &[vec![("ReturnCode", "ERROR"), ("ErrorMessage", "no")]],
            ),
            true,
        ),
        ("<html/>".to_string(), false),
        (billion_laughs(), false),
    ] {
        srv.respond(move |_| Reply::xml(200, body.clone()));
        let erp = pixi(&srv.base);
        let r = no_panic("apply", async move {
            erp.apply(
                &ErpOrder::known_by_id("7", Currency::EUR),
                &ErpWrite::Comment { text: "hi".into() },
                "op-1",
            )
            .await
        })
        .await;
        if refused {
            assert!(matches!(r, Err(ErpError::Refused(_))), "{r:?}");
        } else {
            assert!(matches!(r, Err(ErpError::BadReply(_))), "{r:?}");
        }
    }
}

/// The pixi simulator's "proxy error page" fault.
#[tokio::test]
async fn pixi_simulator_broken_reply_is_bad_reply() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(7, "UNZ").line(1, "10.00").pay_id("s-pay-7"));
    let erp = PixiErp::new(
        &sim.url(),
        &sim.user(),
        Secret::new(sim.password()),
        vec!["UNZ".into()],
        PixiTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        },
    )
    .expect("connector");
    sim.fail_next(SimFault::BrokenReply, 1);
    let r = erp.orders(&[nr.to_string()]).await;
    assert!(matches!(r, Err(ErpError::BadReply(_))), "{r:?}");
    let again = erp.orders(&[nr.to_string()]).await.expect("fault passed");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].total, eur(1000));
}

/// Random mutations of each valid read reply: never a panic; an accepted order is order 7 in
/// EUR with whole-cent amounts.
#[test]
fn pixi_reads_survive_random_mutations() {
    let rt = multi_thread_rt();
    let srv = rt.block_on(Crafted::start());
    let target: Arc<Mutex<(String, String)>> = Arc::new(Mutex::new((String::new(), String::new())));
    let t2 = Arc::clone(&target);
    srv.respond(move |seen| {
        let c = seen.call.clone().unwrap_or_default();
        let (call, body) = t2.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Reply::xml(200, if c == call { body } else { valid_pixi(&c) })
    });
    let base = srv.base.clone();
    let calls = [
        "pixiGetOrderHeader",
        "pixiGetOrderline",
        "pixiGetOrderTotals",
    ];
    fuzz("pixi orders", 300, |rng| {
        let call = calls[rng.below(calls.len())];
        let body = mutate(&valid_pixi(call), rng, 5);
        *target.lock().unwrap_or_else(|p| p.into_inner()) = (call.to_string(), body.clone());
        let erp = pixi(&base);
        let r = rt.block_on(no_panic("orders", async move {
            erp.orders(&["7".to_string()]).await
        }));
        if let Ok(orders) = r {
            check(orders.len() <= 1, || {
                format!("{} orders from {body}", orders.len())
            })?;
            for o in orders {
                check(o.order_id == "7", || {
                    format!("order {} from {body}", o.order_id)
                })?;
                check(o.total.currency() == Currency::EUR, || {
                    format!("currency from {body}")
                })?;
                check(o.lines.len() <= 2, || {
                    format!("{} lines from {body}", o.lines.len())
                })?;
            }
        }
        Ok(())
    });
}
