//! Hostile input at the Paygate wire.
//!
//! A hostile Paygate host: the real [`PaygatePsp`] against a tiny loopback server that answers
//! crafted bodies — replies for another MerchantID or PayID, amount or currency echoes that
//! differ, `Data` that is not hex, of odd length or not whole blocks, `Len` beyond `Data`,
//! non-ASCII plaintext, no `Code`, a success `Code` outside the envelope, every HTTP status of
//! the outcome table (429 included, which the simulator cannot answer), redirects (to a second
//! "foreign" server that must never be asked), bodies past the connector's 64 KiB cap (with a
//! `Content-Length` and chunked), and inquire totals that are negative, non-numeric, fractional
//! or overflowing. A money call never answers `Done` unless the reply is an encrypted success
//! for our MerchantID and PayID echoing what we sent; a read answers a [`PspError`]. A mutation
//! test changes a valid reply's plaintext character by character (fixed seeds, 300 cases) and
//! holds the connector to the same rule, both ways.
//!
//! The notify route: `POST /webhooks/paygate` of the shared router ([`http::router`]) over an
//! [`App`] on SQLite, on a loopback socket. An authentic notify is stored once; a byte-identical
//! repeat (Paygate re-sends on anything but 2xx) is answered 200 "duplicate" and changes nothing;
//! tampered, truncated, wrong-key, wrong-MAC, oversize, malformed, duplicated-field, unknown
//! MerchantID, inner `mid` ≠ outer MerchantID and replayed-for-another-merchant bodies each get
//! their 4xx with a JSON reason, store nothing and queue nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use paybridge_core::app::{App, Settings};
use paybridge_core::config::{Cipher, Config, MethodConfig, Secret};
use paybridge_core::erp::memory::MemoryErp;
use paybridge_core::http;
use paybridge_core::ledger::PspCall;
use paybridge_core::model::{
    PaymentMethod, PaymentState, PspPayment, PspTransaction, TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::psp::paygate::envelope;
use paybridge_core::psp::paygate::{Account, PaygatePsp, PaygateTimeouts};
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::repo::{EventRecord, Repo};
use paybridge_core::store::sqlite::SqliteStore;
use paybridge_testkit::paygate_sim::{PaygateSim, PaymentKind};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MID: &str = "pbHostile01";
const BLOWFISH: &str = "hostileBlowfish-4Tz";
const HMAC: &str = "hostile-hmac-Pw-77q";
/// The payment every money call here is about, and the shop's TransID.
const PID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const TRANS: &str = "shop-4711";
const XID: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
/// The cap on a reply body the connector reads.
const CAP: usize = 64 * 1024;

// --------------------------------------------------------------------- the crafted server ---

/// One request the crafted server received, `Data` opened with our Blowfish password where it
/// opens.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    merchant_id: Option<String>,
    inner: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, key: &str) -> Option<&str> {
        self.inner
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "text/plain".into())],
            body: body.into(),
        }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
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

/// A loopback HTTP server that answers whatever the test says and logs every request.
struct Crafted {
    base: String,
    shared: Arc<Shared>,
    _task: AbortOnDrop,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn crafted_handler(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outer: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        outer
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let inner = match (get("Len").and_then(|l| l.parse().ok()), get("Data")) {
        (Some(len), Some(data)) => envelope::open(BLOWFISH.as_bytes(), &data, len)
            .map(|p| {
                envelope::pairs(&p)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        merchant_id: get("MerchantID"),
        inner,
    };
    lock(&s.log).push(seen.clone());
    let responder = lock(&s.responder).clone();
    let r = responder(&seen);
    let mut resp = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        r.body,
    )
        .into_response();
    for (name, value) in r.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

impl Crafted {
    async fn start() -> Crafted {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            responder: Mutex::new(Arc::new(|_: &Seen| Reply::text(404, "not found"))),
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
        *lock(&self.shared.responder) = Arc::new(f);
    }

    fn always(&self, r: Reply) {
        self.respond(move |_| r.clone());
    }

    fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    fn clear(&self) {
        lock(&self.shared.log).clear();
    }
}

/// A raw loopback server that answers every request with `head` and then `chunks` chunks of
/// `chunk` bytes in chunked transfer encoding (no `Content-Length`), as long as the client
/// reads; returns its base URL.
async fn chunked_server(chunk: usize, chunks: usize) -> (String, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request head and body (small) before answering.
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let body = vec![b'A'; chunk];
                for _ in 0..chunks {
                    let mut frame = format!("{chunk:x}\r\n").into_bytes();
                    frame.extend_from_slice(&body);
                    frame.extend_from_slice(b"\r\n");
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (base, AbortOnDrop(task))
}

/// Runs `f` in its own task so that a connector panic becomes a clear test failure.
async fn no_panic<T: Send + 'static>(what: &str, f: impl Future<Output = T> + Send + 'static) -> T {
    match tokio::spawn(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => panic!("connector panicked on {what}"),
        Err(e) => panic!("task failed on {what}: {e}"),
    }
}

// ----------------------------------------------------------------------- the connector ---

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

fn cfg(psp_method: &str) -> MethodConfig {
    let text = format!(
        r#"
[tenant]
id = "acme"
[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"
[[method]]
erp = "main"
mandant = "01"
erp_method = "CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "{MID}"
encryption_key = "plain:{BLOWFISH}"
hmac_key = "plain:{HMAC}"
psp_method = "{psp_method}"
"#
    );
    Config::parse(&text, "hostile.toml")
        .expect("config")
        .methods
        .remove(0)
}

fn connector(base: &str) -> PaygatePsp {
    PaygatePsp::new(
        vec![
            Account::new(
                MID,
                Cipher::Blowfish,
                Secret::new(BLOWFISH),
                Secret::new(HMAC),
                Some(base),
            )
            .expect("account"),
        ],
        PaygateTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        },
    )
    .expect("client")
}

/// The payment the money calls are about: 100.00 EUR reserved under the shop's TransID.
fn payment() -> PspPayment {
    PspPayment {
        payment_id: PID.into(),
        state: PaymentState::Pending,
        method: PaymentMethod::Card,
        currency: Currency::EUR,
        transactions: vec![PspTransaction {
            id: TRANS.into(),
            kind: TxKind::Authorize,
            status: TxStatus::Success,
            amount: eur(10_000),
            reference: None,
            at: None,
        }],
        bank_details: None,
        totals_only: true,
    }
}

/// `Len=…&Data=…` of `plain` under our Blowfish password.
fn sealed(plain: &str) -> String {
    sealed_with(BLOWFISH, plain)
}

fn sealed_with(key: &str, plain: &str) -> String {
    let (data, len) = envelope::encrypt(key.as_bytes(), plain).expect("encrypt");
    format!("Len={len}&Data={data}")
}

/// A capture reply's plaintext for 25.00 EUR with these fields replaced (`None` drops one).
fn capture_plain(over: &[(&str, Option<&str>)]) -> String {
    let mut fields: Vec<(String, String)> = [
        ("mid", MID),
        ("PayID", PID),
        ("XID", XID),
        ("TransID", TRANS),
        ("Status", "OK"),
        ("Code", "00000000"),
        ("Description", "success"),
        ("Amount", "2500"),
        ("Currency", "EUR"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in over {
        match (fields.iter().position(|(n, _)| n == k), v) {
            (Some(i), Some(v)) => fields[i].1 = v.to_string(),
            (Some(i), None) => {
                fields.remove(i);
            }
            (None, Some(v)) => fields.push((k.to_string(), v.to_string())),
            (None, None) => {}
        }
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// An inquire reply's plaintext (20.00 EUR reserved, 5.00 captured) with fields replaced.
fn inquire_plain(over: &[(&str, Option<&str>)]) -> String {
    let mut fields: Vec<(String, String)> = [
        ("mid", MID),
        ("PayID", PID),
        ("XID", XID),
        ("TransID", TRANS),
        ("Status", "OK"),
        ("Code", "00000000"),
        ("Description", "success"),
        ("AmountAuth", "2000"),
        ("AmountCap", "500"),
        ("AmountCred", "0"),
        ("Currency", "EUR"),
        ("LastStatus", "OK"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in over {
        match (fields.iter().position(|(n, _)| n == k), v) {
            (Some(i), Some(v)) => fields[i].1 = v.to_string(),
            (Some(i), None) => {
                fields.remove(i);
            }
            (None, Some(v)) => fields.push((k.to_string(), v.to_string())),
            (None, None) => {}
        }
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

async fn capture_with(srv: &Crafted, reply: Reply) -> PspOutcome {
    srv.always(reply);
    let psp = connector(&srv.base);
    no_panic("capture", async move {
        psp.execute(
            &cfg("card"),
            &payment(),
            &PspCall::Capture { amount: eur(2_500) },
            "pbhostilereference0000001",
        )
        .await
    })
    .await
}

async fn fetch_with(srv: &Crafted, reply: Reply) -> Result<PspPayment, PspError> {
    srv.always(reply);
    let psp = connector(&srv.base);
    no_panic("inquire", async move { psp.fetch(&cfg("card"), PID).await }).await
}

/// What a money outcome is, for tables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Is {
    Done(&'static str),
    Pending,
    Unknown(&'static str),
    Declined(&'static str),
    Retryable,
}

fn judge(o: &PspOutcome, want: &Is) -> Result<(), String> {
    let ok = match (o, want) {
        (PspOutcome::Done { tx_id }, Is::Done(id)) => tx_id == id,
        (PspOutcome::Pending { tx_id }, Is::Pending) => tx_id == XID,
        (PspOutcome::Unknown { message }, Is::Unknown(part)) => message.contains(part),
        (PspOutcome::Declined { code, .. }, Is::Declined(c)) => code == c,
        (PspOutcome::Retryable { .. }, Is::Retryable) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {o:?}"))
    }
}

// ------------------------------------------------------------------------ baseline -------

#[tokio::test]
async fn paygate_hostile_valid_replies_baseline() {
    let srv = Crafted::start().await;
    let o = capture_with(&srv, Reply::text(200, sealed(&capture_plain(&[])))).await;
    assert_eq!(o, PspOutcome::Done { tx_id: XID.into() });
    let seen = srv.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.path.as_str(), s.merchant_id.as_deref()),
        ("POST", "/capture.aspx", Some(MID))
    );
    assert_eq!(
        (
            s.field("PayID"),
            s.field("TransID"),
            s.field("Amount"),
            s.field("Currency"),
            s.field("ReqId")
        ),
        (
            Some(PID),
            Some(TRANS),
            Some("2500"),
            Some("EUR"),
            Some("pbhostilereference0000001")
        )
    );
    let mac = envelope::mac(
        HMAC.as_bytes(),
        &envelope::request_mac_message(PID, TRANS, MID, "2500", "EUR"),
    );
    assert_eq!(s.field("MAC"), Some(mac.as_str()));

    srv.clear();
    let p = fetch_with(&srv, Reply::text(200, sealed(&inquire_plain(&[]))))
        .await
        .expect("a valid inquire");
    assert_eq!(p.state, PaymentState::Partly);
    assert_eq!(
        p.transactions
            .iter()
            .map(|t| (t.id.as_str(), t.kind, t.amount))
            .collect::<Vec<_>>(),
        vec![
            (TRANS, TxKind::Authorize, eur(2_000)),
            (&format!("{PID}-captured") as &str, TxKind::Charge, eur(500)),
        ]
    );
    assert_eq!(srv.requests()[0].path, "/inquire.aspx");
}

// ------------------------------------------------------------------- money replies -------

#[tokio::test]
async fn paygate_hostile_money_replies_are_never_falsely_done() {
    let srv = Crafted::start().await;
    let ok = |over: &[(&str, Option<&str>)]| Reply::text(200, sealed(&capture_plain(over)));
    let fallback_id: &'static str = Box::leak(format!("{PID}-capture.aspx").into_boxed_str());
    let valid_data = sealed(&capture_plain(&[]));
    let (len, data) = valid_data
        .strip_prefix("Len=")
        .and_then(|r| r.split_once("&Data="))
        .map(|(l, d)| (l.to_string(), d.to_string()))
        .expect("Len and Data");
    let cases: Vec<(&str, Reply, Is)> = vec![
        // Another merchant's or another payment's reply.
        (
            "another mid",
            ok(&[("mid", Some("pbSomeoneElse"))]),
            Is::Unknown("not ours"),
        ),
        (
            "mid in another case",
            ok(&[("mid", Some("PBHOSTILE01"))]),
            Is::Unknown("not ours"),
        ),
        (
            "another PayID",
            ok(&[("PayID", Some("ffffffffffffffffffffffffffffffff"))]),
            Is::Unknown("reply for PayID"),
        ),
        // What we sent, echoed otherwise.
        (
            "amount +1",
            ok(&[("Amount", Some("2501"))]),
            Is::Unknown("differs"),
        ),
        (
            "amount with a leading zero",
            ok(&[("Amount", Some("02500"))]),
            Is::Unknown("differs"),
        ),
        (
            "amount in major units",
            ok(&[("Amount", Some("25.00"))]),
            Is::Unknown("differs"),
        ),
        (
            "amount negative",
            ok(&[("Amount", Some("-2500"))]),
            Is::Unknown("differs"),
        ),
        (
            "amount empty",
            ok(&[("Amount", Some(""))]),
            Is::Unknown("differs"),
        ),
        (
            "currency USD",
            ok(&[("Currency", Some("USD"))]),
            Is::Unknown("currency USD"),
        ),
        (
            "currency empty",
            ok(&[("Currency", Some(""))]),
            Is::Unknown("differs"),
        ),
        // The envelope itself.
        (
            "Data not hex",
            Reply::text(200, format!("Len={len}&Data=ZZ{}", &data[2..])),
            Is::Unknown("cannot decrypt"),
        ),
        (
            "Data of odd length",
            Reply::text(200, format!("Len={len}&Data={}", &data[..data.len() - 1])),
            Is::Unknown("cannot decrypt"),
        ),
        (
            "Data not whole blocks",
            Reply::text(200, format!("Len={len}&Data={}", &data[..data.len() - 2])),
            Is::Unknown("cannot decrypt"),
        ),
        (
            "Len beyond Data",
            Reply::text(200, format!("Len={}&Data={data}", data.len() / 2 + 1)),
            Is::Unknown("does not fit"),
        ),
        (
            "Len not a number",
            Reply::text(200, format!("Len=x{len}&Data={data}")),
            Is::Unknown("not a number"),
        ),
        (
            "Len negative",
            Reply::text(200, format!("Len=-1&Data={data}")),
            Is::Unknown("not a number"),
        ),
        (
            "Len huge",
            Reply::text(200, format!("Len=99999999999999999999999&Data={data}")),
            Is::Unknown("not a number"),
        ),
        (
            "Data empty",
            Reply::text(200, format!("Len={len}&Data=")),
            Is::Unknown("cannot decrypt"),
        ),
        (
            "another Blowfish password",
            Reply::text(200, sealed_with("notOurBlowfish", &capture_plain(&[]))),
            Is::Unknown("cannot decrypt"),
        ),
        (
            "non-ASCII plaintext",
            ok(&[("Description", Some("erfolgreich \u{e4}\u{f6}\u{fc}"))]),
            Is::Unknown("not ASCII"),
        ),
        // Code: missing, malformed, outside the envelope.
        (
            "no Code",
            ok(&[("Code", None)]),
            Is::Unknown("readable Code"),
        ),
        (
            "Code of 7 digits",
            ok(&[("Code", Some("0000000"))]),
            Is::Unknown("readable Code"),
        ),
        (
            "Code of 9 digits",
            ok(&[("Code", Some("000000000"))]),
            Is::Unknown("readable Code"),
        ),
        (
            "Code starting with 1",
            ok(&[("Code", Some("10000000"))]),
            Is::Unknown("readable Code"),
        ),
        (
            "Code with a dash",
            ok(&[("Code", Some("0000-000"))]),
            Is::Unknown("readable Code"),
        ),
        (
            "Code 0 outside the envelope",
            Reply::text(200, capture_plain(&[])),
            Is::Unknown("outside the envelope"),
        ),
        (
            "Code 0 outside the envelope, beside a broken Data",
            Reply::text(200, format!("{}&Len=x&Data=zz", capture_plain(&[]))),
            Is::Unknown("not a number"),
        ),
        (
            "Code 0 outside the envelope, HTTP 400",
            Reply::text(400, capture_plain(&[])),
            Is::Unknown("outside the envelope"),
        ),
        (
            "no body",
            Reply::text(200, ""),
            Is::Unknown("neither Len/Data"),
        ),
        (
            "an HTML page",
            Reply::text(200, "<html><body>Wartungsarbeiten</body></html>"),
            Is::Unknown("neither Len/Data"),
        ),
        (
            "JSON",
            Reply::text(200, r#"{"Code":"00000000","Status":"OK"}"#),
            Is::Unknown("neither Len/Data"),
        ),
        // Status never decides; Code does.
        (
            "Status OK with an error Code",
            ok(&[("Code", Some("22060203"))]),
            Is::Declined("22060203"),
        ),
        (
            "Status FAILED with a success Code",
            ok(&[("Status", Some("FAILED"))]),
            Is::Done(XID),
        ),
        (
            "Code 4…",
            ok(&[("Code", Some("40100006"))]),
            Is::Declined("40100006"),
        ),
        (
            "Code 6… (pending)",
            ok(&[("Code", Some("60000000"))]),
            Is::Pending,
        ),
        (
            "Code 7… (3-D Secure)",
            ok(&[("Code", Some("70000000"))]),
            Is::Pending,
        ),
        (
            "error outside the envelope",
            Reply::text(200, format!("mid={MID}&Status=FAILED&Code=21000305")),
            Is::Declined("21000305"),
        ),
        (
            "error outside the envelope for another mid",
            Reply::text(200, "mid=pbSomeoneElse&Status=FAILED&Code=21000305"),
            Is::Unknown("not ours"),
        ),
        // The XID names the transaction only when it is a plain id.
        ("no XID", ok(&[("XID", None)]), Is::Done(fallback_id)),
        (
            "XID with a path",
            ok(&[("XID", Some("../../admin"))]),
            Is::Done(fallback_id),
        ),
        (
            "XID too long",
            ok(&[("XID", Some(&"x".repeat(33)))]),
            Is::Done(fallback_id),
        ),
        // Extra fields and case are fine.
        (
            "keys in other case, extra fields",
            Reply::text(
                200,
                sealed(&format!(
                    "MID={MID}&payid={PID}&xid={XID}&code=00000000&amount=2500&currency=eur&NewField=1"
                )),
            ),
            Is::Done(XID),
        ),
        // HTTP statuses of the outcome table.
        ("HTTP 429", Reply::text(429, "slow down"), Is::Retryable),
        ("HTTP 408", Reply::text(408, ""), Is::Unknown("HTTP 408")),
        (
            "HTTP 500",
            Reply::text(500, sealed(&capture_plain(&[]))),
            Is::Unknown("HTTP 500"),
        ),
        (
            "HTTP 502",
            Reply::text(502, "bad gateway"),
            Is::Unknown("HTTP 502"),
        ),
        ("HTTP 503", Reply::text(503, ""), Is::Unknown("HTTP 503")),
        ("HTTP 401", Reply::text(401, ""), Is::Declined("HTTP 401")),
        (
            "HTTP 403",
            Reply::text(403, "forbidden"),
            Is::Declined("HTTP 403"),
        ),
        (
            "HTTP 404",
            Reply::text(404, sealed(&capture_plain(&[]))),
            Is::Declined("HTTP 404"),
        ),
        (
            "HTTP 400 garbage",
            Reply::text(400, "bad request"),
            Is::Declined("HTTP 400"),
        ),
        (
            "Unexpected exception",
            Reply::text(200, "Unexpected exception"),
            Is::Declined("PAYBRIDGE.CREDENTIALS"),
        ),
        (
            "Unexpected exception in a page",
            Reply::text(500, "<h1>Unexpected exception</h1>"),
            Is::Unknown("HTTP 500"),
        ),
        // A Content-Length past the cap.
        (
            "a body larger than 64 KiB",
            Reply::text(200, format!("{valid_data}&Custom={}", "A".repeat(CAP))),
            Is::Unknown("larger than 65536 bytes"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, reply, want) in &cases {
        let o = capture_with(&srv, reply.clone()).await;
        if let Err(e) = judge(&o, want) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Every case sent exactly one capture and nothing else.
    let seen = srv.requests();
    assert_eq!(seen.len(), cases.len());
    assert!(seen.iter().all(|s| s.path == "/capture.aspx"));
}

#[tokio::test]
async fn paygate_hostile_bodies_past_the_cap_are_unknown_and_do_not_hang() {
    let srv = Crafted::start().await;
    // Just under the cap with Paygate's plain `Custom` echo: still read, still a success.
    let valid = sealed(&capture_plain(&[]));
    let pad = CAP - valid.len() - "&Custom=".len();
    let body = format!("{valid}&Custom={}", "A".repeat(pad));
    assert_eq!(body.len(), CAP);
    let o = capture_with(&srv, Reply::text(200, body)).await;
    assert_eq!(o, PspOutcome::Done { tx_id: XID.into() });
    // One byte more.
    let body = format!("{valid}&Custom={}", "A".repeat(pad + 1));
    let o = capture_with(&srv, Reply::text(200, body)).await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("larger than")),
        "{o:?}"
    );
    // Chunked, no Content-Length: 10 MiB offered, cut at the cap, quickly.
    let (base, _server) = chunked_server(16 * 1024, 640).await;
    let psp = connector(&base);
    let started = Instant::now();
    let o = no_panic("chunked capture", async move {
        psp.execute(
            &cfg("card"),
            &payment(),
            &PspCall::Capture { amount: eur(2_500) },
            "pbchunked",
        )
        .await
    })
    .await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("larger than")),
        "{o:?}"
    );
    let psp = connector(&base);
    let r = no_panic("chunked inquire", async move {
        psp.fetch(&cfg("card"), PID).await
    })
    .await;
    assert!(
        matches!(&r, Err(PspError::Unavailable(m)) if m.contains("larger than")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A Content-Length past the cap on a read.
    let r = fetch_with(&srv, Reply::text(200, "A".repeat(CAP + 1))).await;
    assert!(
        matches!(&r, Err(PspError::Unavailable(m)) if m.contains("larger than")),
        "{r:?}"
    );
}

#[tokio::test]
async fn paygate_hostile_redirects_are_never_followed() {
    let srv = Crafted::start().await;
    let foreign = Crafted::start().await;
    foreign.always(Reply::text(200, sealed(&capture_plain(&[]))));
    for status in [301u16, 302, 303, 307, 308] {
        for target in [
            format!("{}/capture.aspx", foreign.base),
            "https://www.computop-paygate.com/capture.aspx".to_string(),
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ] {
            let redirect = Reply::text(status, "").with_header("location", target.clone());
            let o = capture_with(&srv, redirect.clone()).await;
            let want = format!("HTTP {status}");
            assert!(
                matches!(&o, PspOutcome::Declined { code, .. } if *code == want),
                "{status} to {target}: {o:?}"
            );
            let r = fetch_with(&srv, redirect).await;
            assert!(
                matches!(&r, Err(PspError::BadReply(_))),
                "{status} to {target}: {r:?}"
            );
        }
    }
    assert!(foreign.requests().is_empty(), "a redirect was followed");
    assert_eq!(srv.requests().len(), 5 * 3 * 2);
}

// ----------------------------------------------------------------- inquire replies -------

#[tokio::test]
async fn paygate_hostile_inquire_replies_are_errors() {
    let srv = Crafted::start().await;
    let ok = |over: &[(&str, Option<&str>)]| Reply::text(200, sealed(&inquire_plain(over)));
    type Check = fn(&PspError) -> bool;
    let bad: Check = |e| matches!(e, PspError::BadReply(_));
    let not_found: Check = |e| matches!(e, PspError::NotFound(_));
    let unavailable: Check = |e| matches!(e, PspError::Unavailable(_));
    let auth: Check = |e| matches!(e, PspError::Auth(_));
    let mut cases: Vec<(String, Reply, Check)> = Vec::new();
    for key in ["AmountAuth", "AmountCap", "AmountCred"] {
        for v in [
            "-1",
            "-2000",
            "abc",
            "1.5",
            "20,00",
            "1e3",
            "0x10",
            "99999999999999999999",
            "9223372036854775808",
            "10000000000",
            "\u{0663}",
            "１２",
        ] {
            cases.push((format!("{key}={v}"), ok(&[(key, Some(v))]), bad));
        }
    }
    let more: Vec<(&str, Reply, Check)> = vec![
        ("another mid", ok(&[("mid", Some("pbSomeoneElse"))]), bad),
        (
            "another PayID",
            ok(&[("PayID", Some("ffffffffffffffffffffffffffffffff"))]),
            bad,
        ),
        ("no Currency", ok(&[("Currency", None)]), bad),
        ("Currency XYZ", ok(&[("Currency", Some("XYZ"))]), bad),
        (
            "Currency of 2 letters",
            ok(&[("Currency", Some("EU"))]),
            bad,
        ),
        ("no Code", ok(&[("Code", None)]), bad),
        ("Code 6…", ok(&[("Code", Some("60000000"))]), bad),
        ("Code of 4 digits", ok(&[("Code", Some("0000"))]), bad),
        ("Code 2…", ok(&[("Code", Some("20160004"))]), not_found),
        (
            "success outside the envelope",
            Reply::text(200, inquire_plain(&[])),
            bad,
        ),
        (
            "error outside the envelope",
            Reply::text(200, format!("mid={MID}&Status=FAILED&Code=20160004")),
            not_found,
        ),
        (
            "non-ASCII plaintext",
            ok(&[("Description", Some("\u{e9}chec"))]),
            bad,
        ),
        (
            "another Blowfish password",
            Reply::text(200, sealed_with("notOurBlowfish", &inquire_plain(&[]))),
            bad,
        ),
        (
            "Data not hex",
            Reply::text(200, "Len=8&Data=XYZXYZXYZXYZXYZX"),
            bad,
        ),
        (
            "Len beyond Data",
            Reply::text(200, "Len=99&Data=00112233445566778899AABBCCDDEEFF"),
            bad,
        ),
        ("empty", Reply::text(200, ""), bad),
        ("HTML", Reply::text(200, "<html>maintenance</html>"), bad),
        ("HTTP 429", Reply::text(429, ""), unavailable),
        (
            "HTTP 500",
            Reply::text(500, sealed(&inquire_plain(&[]))),
            unavailable,
        ),
        ("HTTP 503", Reply::text(503, ""), unavailable),
        ("HTTP 401", Reply::text(401, ""), auth),
        ("HTTP 404", Reply::text(404, ""), auth),
        (
            "Unexpected exception",
            Reply::text(200, "Unexpected exception"),
            auth,
        ),
    ];
    cases.extend(more.into_iter().map(|(n, r, c)| (n.to_string(), r, c)));
    let mut failures = Vec::new();
    for (name, reply, check) in &cases {
        match fetch_with(&srv, reply.clone()).await {
            Err(e) if check(&e) => {
                // The error never echoes a password.
                let text = e.to_string();
                if text.contains(BLOWFISH) || text.contains(HMAC) {
                    failures.push(format!("{name}: a password in {text}"));
                }
            }
            other => failures.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(srv.requests().iter().all(|s| s.path == "/inquire.aspx"));
    // Zero, a plus sign, blanks and absent totals are amounts (Paygate's `0` for nothing).
    let p = fetch_with(
        &srv,
        ok(&[
            ("AmountAuth", Some(" 2000 ")),
            ("AmountCap", Some("")),
            ("AmountCred", None),
        ]),
    )
    .await
    .expect("plain totals");
    assert_eq!(
        p.transactions
            .iter()
            .map(|t| (t.kind, t.amount))
            .collect::<Vec<_>>(),
        vec![(TxKind::Authorize, eur(2_000))]
    );
    let p = fetch_with(&srv, ok(&[("AmountAuth", Some("9999999999"))]))
        .await
        .expect("the largest n..10 amount");
    assert_eq!(p.transactions[0].amount, eur(9_999_999_999));
}

// ---------------------------------------------------------------------- mutations -------

/// A small seeded PRNG (SplitMix64): fixed seeds, reproducible cases.
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
    fn nasty(&mut self) -> char {
        const NASTY: &[char] = &[
            '&', '=', '0', '1', '2', '4', '6', '7', '9', 'A', 'a', 'z', ' ', '\t', '-', '.', '+',
            '%', '*', 'e', 'E', 'U', 'R', 'x', 'X',
        ];
        NASTY[self.below(NASTY.len())]
    }
}

/// Deletes, duplicates, replaces or inserts up to `max` characters.
fn mutate(text: &str, rng: &mut Rng, max: usize) -> String {
    let mut v: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(max) {
        let len = v.len();
        let at = rng.below(len.max(1));
        match rng.below(4) {
            0 if len > 0 => {
                v.remove(at);
            }
            1 if len > 0 => {
                let c = v[at];
                v.insert(at, c);
            }
            2 if len > 0 => v[at] = rng.nasty(),
            _ => {
                let c = rng.nasty();
                v.insert(at.min(len), c);
            }
        }
    }
    v.into_iter().collect()
}

/// Whether a plaintext is a success for our capture of 2500 EUR on `PID`, by Paygate's rules
/// read independently of the connector: the first of each key (any case) counts; `Code` 8
/// letters or digits starting with `0`; `mid`, `PayID`, `Amount`, `Currency` ours where present.
fn is_matching_success(plain: &str) -> bool {
    let pairs: Vec<(String, &str)> = plain
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let code = get("code").unwrap_or("").trim();
    code.len() == 8
        && code.starts_with('0')
        && code.chars().all(|c| c.is_ascii_alphanumeric())
        && get("mid").is_none_or(|m| m == MID)
        && get("payid").is_none_or(|p| p.is_empty() || p.eq_ignore_ascii_case(PID))
        && get("amount").is_none_or(|a| a.trim() == "2500")
        && get("currency").is_none_or(|c| c.trim().eq_ignore_ascii_case("EUR"))
}

#[tokio::test]
async fn paygate_hostile_execute_is_done_exactly_for_a_matching_success_under_mutation() {
    let srv = Crafted::start().await;
    let base = capture_plain(&[]);
    assert!(is_matching_success(&base));
    let (mut done, mut not_done) = (0, 0);
    let mut failures = Vec::new();
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let plain = mutate(&base, &mut rng, 4);
        let o = capture_with(&srv, Reply::text(200, sealed(&plain))).await;
        let expect = is_matching_success(&plain);
        let is_done = matches!(o, PspOutcome::Done { .. });
        if is_done != expect {
            failures.push(format!("seed {seed}: {plain:?} → {o:?} (oracle: {expect})"));
        }
        if is_done {
            done += 1;
        } else {
            not_done += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Both sides of the rule were exercised.
    assert!(done >= 30 && not_done >= 30, "{done} done, {not_done} not");
}

// ------------------------------------------------------------------- notify route -------

const OTHER_MID: &str = "pbHostile02";
const OTHER_BLOWFISH: &str = "otherBlowfish-9Lk";
const OTHER_HMAC: &str = "other-hmac-Pw-31m";

fn app_config() -> Config {
    let method = |code: &str, mid: &str, bf: &str, hm: &str| {
        format!(
            r#"
[[method]]
erp = "shop"
mandant = "01"
erp_method = "{code}"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "{mid}"
encryption_key = "plain:{bf}"
hmac_key = "plain:{hm}"
psp_method = "card"
"#
        )
    };
    let text = format!(
        r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "shop"
kind = "memory"
fixtures = "unused.json"
{}{}"#,
        method("PGA", MID, BLOWFISH, HMAC),
        method("PGB", OTHER_MID, OTHER_BLOWFISH, OTHER_HMAC)
    );
    Config::parse(&text, "app.toml").expect("app config")
}

struct NotifyFx {
    app: Arc<App>,
    psp: MemoryPsp,
    url: String,
    http: reqwest::Client,
    _server: AbortOnDrop,
}

async fn notify_fixture() -> NotifyFx {
    let psp = MemoryPsp::new();
    let mut erps: HashMap<String, Arc<dyn paybridge_core::erp::Erp>> = HashMap::new();
    erps.insert("shop".into(), Arc::new(MemoryErp::new()));
    let app = Arc::new(App {
        config: Arc::new(app_config()),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(10).expect("queue")),
        erps,
        psp: Arc::new(psp.clone()),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "paygate-hostile".into(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let router = http::router(Arc::clone(&app));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    NotifyFx {
        app,
        psp,
        url: format!("http://{addr}/webhooks/paygate"),
        http: reqwest::Client::new(),
        _server: AbortOnDrop(task),
    }
}

impl NotifyFx {
    async fn events(&self) -> Vec<EventRecord> {
        Repo::new(self.app.store.as_ref())
            .unapplied_events("acme", 1000, Utc::now())
            .await
            .expect("events")
    }

    async fn depth(&self) -> usize {
        self.app.queue.depth().await.expect("depth")
    }

    /// POSTs `body` as Paygate does; (status, JSON body).
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(&self.url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=iso-8859-1",
            )
            .body(body)
            .send()
            .await
            .expect("paybridge answers");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("a body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JSON answer ({e}): {:?}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }
}

/// A notify's plaintext: `mid, PayID, XID, TransID, Status, Description, Code, MAC` with the
/// MAC over `PayID*TransID*mid*Status*Code` under `hmac`.
fn notify_plain(mid: &str, pay_id: &str, status: &str, code: &str, hmac: &str) -> String {
    let mac = envelope::mac(
        hmac.as_bytes(),
        &envelope::response_mac_message(pay_id, TRANS, mid, status, code),
    );
    format!(
        "mid={mid}&PayID={pay_id}&XID={XID}&TransID={TRANS}&Status={status}&Description=success&Code={code}&MAC={mac}"
    )
}

/// The form body: `MerchantID` (when given), `Len`, `Data` under `blowfish`.
fn notify_form(outer_mid: Option<&str>, blowfish: &str, plain: &str) -> String {
    let sealed = sealed_with(blowfish, plain);
    match outer_mid {
        Some(m) => format!("MerchantID={m}&{sealed}"),
        None => sealed,
    }
}

/// A valid notify of `MID` for `pay_id`.
fn good_notify(pay_id: &str) -> String {
    notify_form(
        Some(MID),
        BLOWFISH,
        &notify_plain(MID, pay_id, "AUTHORIZED", "00000000", HMAC),
    )
}

/// What a stored event says (without its bookkeeping).
fn summary(e: &EventRecord) -> (String, String, String, String, String, bool) {
    (
        e.psp.clone(),
        e.identity.clone(),
        e.event.clone(),
        e.payment_id.clone(),
        e.public_key.clone(),
        e.applied,
    )
}

#[tokio::test]
async fn paygate_notify_is_stored_once_and_a_byte_identical_repeat_is_a_duplicate() {
    let fx = notify_fixture().await;
    // The simulator's notify, over HTTP, for a merchant with the configured keys.
    let sim = PaygateSim::start().await;
    sim.add_merchant(MID, BLOWFISH, HMAC);
    let pid = sim.create_payment(MID, TRANS, 10_000, "EUR", PaymentKind::Reserved);
    assert_eq!(sim.notify(&pid, &fx.url, None).await, Ok(200));
    let stored = fx.events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            stored[0].psp.as_str(),
            stored[0].event.as_str(),
            stored[0].payment_id.as_str(),
            stored[0].public_key.as_str(),
            stored[0].unverified
        ),
        ("paygate", "paygate.authorized", pid.as_str(), MID, true)
    );
    assert_eq!(fx.depth().await, 1);
    // Paygate re-sends the identical body (it got no 2xx, as far as it knows): 2xx, nothing new.
    let form = sim.notify_form(&pid, None).expect("the same notify");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    for _ in 0..3 {
        let (status, answer) = fx.post(body.clone()).await;
        assert_eq!(
            (status, answer),
            (200, serde_json::json!({"status": "duplicate"}))
        );
    }
    // Its retry schedule stops at the first 2xx.
    let attempts = sim.notify_with_retries(&pid, &fx.url, 60_000).await;
    assert_eq!(attempts, vec![Ok(200)]);
    let after = fx.events().await;
    assert_eq!(
        after.iter().map(summary).collect::<Vec<_>>(),
        stored.iter().map(summary).collect::<Vec<_>>(),
        "one stored event, unchanged"
    );
    // A repeat only re-arms the stored event for the sweep (app/inbound.rs).
    assert!(after[0].received_at >= stored[0].received_at);
    assert!(!after[0].applied);
    assert_eq!(fx.depth().await, 1, "a repeat is not queued again");
    assert_eq!(fx.psp.fetches(), 0, "a notify never reads the PSP");
    // A hand-made notify of the same payment without the plain MerchantID: the same event.
    let (status, answer) = fx
        .post(notify_form(
            None,
            BLOWFISH,
            &notify_plain(MID, &pid, "AUTHORIZED", "00000000", HMAC),
        ))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(fx.events().await.len(), 1);
    // Another payment is another event.
    let (status, answer) = fx.post(good_notify(PID)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    assert_eq!(fx.events().await.len(), 2);
    assert_eq!(fx.depth().await, 2);
}

#[tokio::test]
async fn paygate_notify_hostile_bodies_are_4xx_and_store_nothing() {
    let fx = notify_fixture().await;
    // One accepted notify first: every refusal below must leave exactly it.
    let (status, _) = fx.post(good_notify(PID)).await;
    assert_eq!(status, 200);
    let before: Vec<_> = fx.events().await.iter().map(summary).collect();
    assert_eq!(before.len(), 1);
    let depth = fx.depth().await;

    let pid = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let good = good_notify(pid);
    let data_at = good.find("Data=").expect("Data") + "Data=".len();
    let len_of = |body: &str| -> usize {
        body.split('&')
            .find_map(|p| p.strip_prefix("Len="))
            .and_then(|l| l.parse().ok())
            .expect("Len")
    };
    let flip = |body: &str, at: usize| -> String {
        let mut b = body.as_bytes().to_vec();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).expect("ascii")
    };
    let mut cases: Vec<(String, Vec<u8>, u16)> = Vec::new();
    let mut add =
        |name: &str, body: Vec<u8>, status: u16| cases.push((name.to_string(), body, status));

    // Tampered: one hex digit of Data changed, at the start, the middle, the end.
    for at in [data_at, data_at + 40, good.len() - 1] {
        add(
            &format!("tampered at {at}"),
            flip(&good, at).into_bytes(),
            401,
        );
    }
    // Truncated: Data cut (Len unchanged), to odd length, to nothing.
    add(
        "truncated by a block",
        good.as_bytes()[..good.len() - 16].to_vec(),
        401,
    );
    add(
        "truncated to odd length",
        good.as_bytes()[..good.len() - 1].to_vec(),
        401,
    );
    add("Data empty", good.as_bytes()[..data_at].to_vec(), 401);
    add(
        "Len beyond Data",
        good.replacen(
            &format!("Len={}", len_of(&good)),
            &format!("Len={}", len_of(&good) + 64),
            1,
        )
        .into_bytes(),
        401,
    );
    add(
        "Len 0",
        good.replacen(&format!("Len={}", len_of(&good)), "Len=0", 1)
            .into_bytes(),
        400,
    );
    add(
        "Len huge",
        good.replacen(
            &format!("Len={}", len_of(&good)),
            "Len=99999999999999999999",
            1,
        )
        .into_bytes(),
        400,
    );
    add(
        "Len past the notify's maximum",
        good.replacen(&format!("Len={}", len_of(&good)), "Len=4000", 1)
            .into_bytes(),
        400,
    );
    // Wrong keys.
    add(
        "another Blowfish password",
        notify_form(
            Some(MID),
            "notOurBlowfish",
            &notify_plain(MID, pid, "AUTHORIZED", "00000000", HMAC),
        )
        .into_bytes(),
        401,
    );
    add(
        "another HMAC password",
        notify_form(
            Some(MID),
            BLOWFISH,
            &notify_plain(MID, pid, "AUTHORIZED", "00000000", "not-our-hmac"),
        )
        .into_bytes(),
        401,
    );
    add(
        "the other merchant's HMAC password",
        notify_form(
            Some(MID),
            BLOWFISH,
            &notify_plain(MID, pid, "AUTHORIZED", "00000000", OTHER_HMAC),
        )
        .into_bytes(),
        401,
    );
    let plain = notify_plain(MID, pid, "AUTHORIZED", "00000000", HMAC);
    let no_mac = plain.split("&MAC=").next().expect("plain").to_string();
    add(
        "no MAC",
        notify_form(Some(MID), BLOWFISH, &no_mac).into_bytes(),
        401,
    );
    add(
        "MAC of another status",
        notify_form(
            Some(MID),
            BLOWFISH,
            &plain.replace("Status=AUTHORIZED", "Status=OK"),
        )
        .into_bytes(),
        401,
    );
    add(
        "MAC of another PayID",
        notify_form(
            Some(MID),
            BLOWFISH,
            &plain.replace(&format!("PayID={pid}"), &format!("PayID={PID}")),
        )
        .into_bytes(),
        401,
    );
    // Accounts: unknown, the other merchant's, inner mid not the outer one.
    add(
        "unknown MerchantID",
        notify_form(Some("pbNobody"), BLOWFISH, &plain).into_bytes(),
        401,
    );
    add(
        "outer MerchantID of the other merchant",
        notify_form(Some(OTHER_MID), BLOWFISH, &plain).into_bytes(),
        401,
    );
    add(
        "inner mid of the other merchant under our keys",
        notify_form(
            Some(MID),
            BLOWFISH,
            &notify_plain(OTHER_MID, pid, "AUTHORIZED", "00000000", HMAC),
        )
        .into_bytes(),
        401,
    );
    add(
        "inner mid of the other merchant, no outer MerchantID",
        notify_form(
            None,
            BLOWFISH,
            &notify_plain(OTHER_MID, pid, "AUTHORIZED", "00000000", HMAC),
        )
        .into_bytes(),
        401,
    );
    add(
        "inner mid unknown",
        notify_form(
            Some(MID),
            BLOWFISH,
            &notify_plain("pbNobody", pid, "AUTHORIZED", "00000000", HMAC),
        )
        .into_bytes(),
        401,
    );
    add(
        "our notify replayed as the other merchant's",
        good.replacen(
            &format!("MerchantID={MID}"),
            &format!("MerchantID={OTHER_MID}"),
            1,
        )
        .into_bytes(),
        401,
    );
    add(
        "a PayID that is not a plain id",
        notify_form(
            Some(MID),
            BLOWFISH,
            &notify_plain(MID, "abc/../1", "AUTHORIZED", "00000000", HMAC),
        )
        .into_bytes(),
        401,
    );
    // Oversize.
    add(
        "over 8 KiB",
        format!("{good}&Custom={}", "A".repeat(8 * 1024)).into_bytes(),
        413,
    );
    add("over 16 KiB", vec![b'A'; 16 * 1024 + 1], 413);
    add("20 KiB", vec![b'A'; 20 * 1024], 413);
    // Malformed forms.
    add("empty", Vec::new(), 400);
    add("text", b"hello".to_vec(), 400);
    add("JSON", br#"{"Len":"8","Data":"00"}"#.to_vec(), 400);
    add("invalid UTF-8", vec![0xff, 0xfe, b'L', b'e', b'n'], 400);
    add(
        "only Len",
        format!("Len={}", len_of(&good)).into_bytes(),
        400,
    );
    add("only Data", good.as_bytes()[data_at - 5..].to_vec(), 400);
    add(
        "Len not a number",
        good.replacen(&format!("Len={}", len_of(&good)), "Len=ten", 1)
            .into_bytes(),
        400,
    );
    // Duplicated fields.
    add(
        "Len twice",
        format!("Len={}&{good}", len_of(&good)).into_bytes(),
        400,
    );
    add("Data twice", format!("{good}&Data=00").into_bytes(), 400);
    add(
        "MerchantID twice",
        format!("MerchantID={OTHER_MID}&{good}").into_bytes(),
        400,
    );
    add(
        "data twice in other case",
        format!("{good}&data=00").into_bytes(),
        400,
    );

    let mut failures = Vec::new();
    for (name, body, want) in &cases {
        let (status, answer) = fx.post(body.clone()).await;
        let reason = answer["error"].as_str().unwrap_or_default().to_string();
        if status != *want || reason.is_empty() {
            failures.push(format!(
                "{name}: {status} {answer}, expected {want} with a reason"
            ));
        }
        for secret in [BLOWFISH, HMAC, OTHER_BLOWFISH, OTHER_HMAC] {
            if reason.contains(secret) {
                failures.push(format!("{name}: a password in {reason}"));
            }
        }
        let now: Vec<_> = fx.events().await.iter().map(summary).collect();
        if now != before {
            failures.push(format!("{name}: stored {now:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bodies:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(fx.depth().await, depth, "nothing queued");
    assert_eq!(fx.psp.fetches(), 0);
    // Wrong routes for a good body.
    for (method, path, want) in [
        ("GET", "/webhooks/paygate", 405),
        ("PUT", "/webhooks/paygate", 405),
        ("POST", "/webhooks/PAYGATE", 404),
        ("POST", "/webhooks/computop", 404),
        ("POST", "/webhooks/paygate/", 404),
    ] {
        let url = fx.url.replace("/webhooks/paygate", path);
        let resp = fx
            .http
            .request(method.parse().expect("method"), &url)
            .body(good.clone())
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
    }
    let now: Vec<_> = fx.events().await.iter().map(summary).collect();
    assert_eq!(now, before);
    // And the good body itself is still accepted afterwards: the refusals were the bodies'.
    let (status, answer) = fx.post(good).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    assert_eq!(fx.events().await.len(), 2);
}
