//! Hostile input against every parser of outside input in paybridge-core: the TOML config
//! ([`Config::parse`]), Unzer webhook bodies ([`App::accept_webhook`]), the HTTP router
//! ([`http::router`] through `tower::ServiceExt::oneshot`), money text and JSON ([`Money::parse`],
//! `Money`'s serde) and the `memory` fixtures files ([`memory::load_fixtures`]).
//!
//! Every test here holds the same line: bad input gets a clear error (a located config error, an
//! HTTP 4xx with a JSON reason, a `WebhookError`, a `file:line:col` fixtures error) and changes
//! nothing; nothing panics; a secret present in the input never shows in an error. Property tests
//! mutate valid inputs (delete / duplicate / replace / insert characters, wrong JSON types,
//! unknown keys) and check those invariants on every case; targeted tests pin the nasty shapes by
//! name (path traversal, metadata URLs, NUL, unicode digits, 1e400, > 28 digits, deep nesting).
//!
//! Tests marked `#[ignore = "product bug: …"]` assert the behaviour the product should have and
//! fail today; each names the function and input. Run them with `--ignored` once fixed. The
//! property tests exclude exactly those known shapes, so they stay green and keep guarding the
//! rest.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use paybridge_core::app::{App, MAX_WEBHOOK_BYTES, Settings, WebhookAck, WebhookError};
use paybridge_core::config::{Config, ConfigError};
use paybridge_core::erp::memory;
use paybridge_core::erp::memory::MemoryErp;
use paybridge_core::http;
use paybridge_core::ledger::OrderKey;
use paybridge_core::model::{
    ErpOrder, LineStatus, OrderStatus, PaymentMethod, PaymentState, PspPayment, PspTransaction,
    TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::notify::LogNotifier;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::repo::{EventRecord, Repo};
use paybridge_core::store::sqlite::SqliteStore;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use tower::ServiceExt;

// ------------------------------------------------------------------------------ mutations ---

/// One edit of a text, at a position taken modulo its length (in characters).
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    /// Deletes up to 8 characters.
    DeleteRun(usize, usize),
    Duplicate(usize),
    Replace(usize, char),
    Insert(usize, char),
    /// Copies a run of up to 16 characters elsewhere (duplicated keys, lines, brackets).
    CopyRun(usize, usize, usize),
}

/// Characters that matter to the formats under test, plus anything at all.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            '"', '\'', '=', '[', ']', '{', '}', ',', ':', '\n', '\r', '\0', '\\', '#', '.', '-',
            '/', '%', '@', '0', '1', '9', 'e', 'E', '+', ' ', '\t', '\u{202e}', '\u{feff}',
            '\u{0663}', '\u{ff11}', 'é', '\u{1F4B6}', '<', '>', '&',
        ]),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 1..8usize).prop_map(|(a, n)| Edit::DeleteRun(a, n)),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), nasty_char()).prop_map(|(a, c)| Edit::Replace(a, c)),
        (any::<usize>(), nasty_char()).prop_map(|(a, c)| Edit::Insert(a, c)),
        (any::<usize>(), 1..16usize, any::<usize>()).prop_map(|(a, n, b)| Edit::CopyRun(a, n, b)),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut v: Vec<char> = text.chars().collect();
    for e in edits {
        let len = v.len();
        match *e {
            Edit::Delete(a) if len > 0 => {
                v.remove(a % len);
            }
            Edit::DeleteRun(a, n) if len > 0 => {
                let a = a % len;
                v.drain(a..(a + n).min(len));
            }
            Edit::Duplicate(a) if len > 0 => {
                let c = v[a % len];
                v.insert(a % len, c);
            }
            Edit::Replace(a, c) if len > 0 => v[a % len] = c,
            Edit::Insert(a, c) => v.insert(a % (len + 1), c),
            Edit::CopyRun(a, n, b) if len > 0 => {
                let a = a % len;
                let run: Vec<char> = v[a..(a + n).min(len)].to_vec();
                let at = b % (len + 1);
                v.splice(at..at, run);
            }
            _ => {}
        }
    }
    v.into_iter().collect()
}

/// `n` cases, no regression files written next to the sources.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// --------------------------------------------------------------------------------- config ---

const FILE: &str = "hostile.toml";
const SECRETS: [&str; 3] = [
    "s-priv-TOPSECRET-4711",
    "PIXI-TOPSECRET-0815",
    "SMTP-TOPSECRET-99",
];

/// Every section and field a config can have, three secrets inline.
const FULL_CONFIG: &str = r#"[tenant]
id = "acme"
timezone = "Europe/Berlin"
quiet_hours = "00:00-04:00"

[server]
listen = "127.0.0.1:8080"
database = "./paybridge.db"
poll_interval_secs = 60

[[erp]]
id = "main"
kind = "pixi"
url = "https://pixi.example/soap"
user = "api"
password = "plain:PIXI-TOPSECRET-0815"

[[erp]]
id = "trial"
kind = "memory"
fixtures = "orders.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "UNZER_CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
rounding_tolerance = 2
public_key = "s-pub-abc"
private_key = "plain:s-priv-TOPSECRET-4711"
api_host = "https://sbx-api.unzer.com"

[smtp]
host = "smtp.example.com"
port = 587
user = "mailer"
password = "plain:SMTP-TOPSECRET-99"
from = "paybridge@example.com"
to = "ops@example.com"
starttls = true
"#;

/// The located-error contract of [`Config::parse`] on any input.
fn check_config_error(text: &str, e: &ConfigError) {
    assert_eq!(e.file, FILE, "{e}");
    if !text.trim().is_empty() {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&e.line),
            "line {} outside 1..={lines}: {e}",
            e.line
        );
        assert!(e.column >= 1, "{e}");
    }
    assert!(!e.message.is_empty(), "{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}:")), "{e}");
}

/// Shapes known to echo input into the error (see the ignored tests below): a secret reference
/// whose scheme part is a raw secret, and an error on a line starting with `[` (the whole line
/// becomes the `field`).
fn known_echo(text: &str, e: &ConfigError) -> bool {
    e.message.starts_with("unknown secret scheme")
        || text
            .split('\n')
            .nth(e.line.wrapping_sub(1))
            .is_some_and(|l| l.trim_start().starts_with('['))
}

fn check_no_secret(text: &str, rendered: &str) {
    for s in SECRETS {
        if text.contains(s) {
            assert!(!rendered.contains(s), "secret {s} leaked: {rendered}");
        }
    }
}

#[test]
fn the_full_config_parses_and_its_debug_hides_secrets() {
    let c = Config::parse(FULL_CONFIG, FILE).expect("full config parses");
    assert_eq!(c.erp.len(), 2);
    assert_eq!(c.methods.len(), 1);
    assert!(c.smtp.is_some());
    check_no_secret(FULL_CONFIG, &format!("{c:?}"));
}

proptest! {
    #![proptest_config(cases(512))]

    /// Random mutations of a full valid config: never a panic; an error names the file, a line
    /// inside the text and a field, and never carries a secret that is in the input.
    #[test]
    fn config_mutations_give_located_errors_without_secrets(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        let text = mutate(FULL_CONFIG, &edits);
        match Config::parse(&text, FILE) {
            Ok(c) => check_no_secret(&text, &format!("{c:?}")),
            Err(e) => {
                check_config_error(&text, &e);
                if !known_echo(&text, &e) {
                    check_no_secret(&text, &e.to_string());
                }
            }
        }
    }

    /// Random text (and lossily decoded random bytes): never a panic, always a located error.
    #[test]
    fn config_random_text_gives_located_errors(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..512)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            "[\\[\\]a-z_=\"'.0-9\n #{},:-]{0,200}",
        ]
    ) {
        if let Err(e) = Config::parse(&text, FILE) {
            check_config_error(&text, &e);
        }
    }
}

/// One hostile value per field: the error is located on that line with that field, the secrets
/// of the file stay out of it.
#[test]
fn config_wrong_types_huge_numbers_unicode_and_nul_are_located() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = \"2\"",
            "rounding_tolerance",
        ),
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = -1",
            "rounding_tolerance",
        ),
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = 4294967296",
            "rounding_tolerance",
        ),
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = 2.5",
            "rounding_tolerance",
        ),
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = 1e400",
            "rounding_tolerance",
        ),
        (
            "rounding_tolerance = 2",
            "rounding_tolerance = nan",
            "rounding_tolerance",
        ),
        (
            "poll_interval_secs = 60",
            "poll_interval_secs = 0",
            "server.poll_interval_secs",
        ),
        (
            "poll_interval_secs = 60",
            "poll_interval_secs = 99999999999999999999999",
            "poll_interval_secs",
        ),
        ("port = 587", "port = 70000", "port"),
        ("starttls = true", "starttls = \"yes\"", "starttls"),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:８０\"",
            "server.listen",
        ),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"[::1]:99999\"",
            "server.listen",
        ),
        (
            "timezone = \"Europe/Berlin\"",
            "timezone = \"../../etc/passwd\"",
            "tenant.timezone",
        ),
        (
            "timezone = \"Europe/Berlin\"",
            "timezone = \"Europe/Berlin\\u0000\"",
            "tenant.timezone",
        ),
        (
            "quiet_hours = \"00:00-04:00\"",
            "quiet_hours = \"24:00-04:00\"",
            "tenant.quiet_hours",
        ),
        (
            "quiet_hours = \"00:00-04:00\"",
            "quiet_hours = \"٠٠:٠٠-٠٤:٠٠\"",
            "tenant.quiet_hours",
        ),
        ("id = \"acme\"", "id = \"   \"", "tenant.id"),
        ("id = \"acme\"", "id = 5", "id"),
        ("kind = \"pixi\"", "kind = \"PIXI\"", "kind"),
        (
            "url = \"https://pixi.example/soap\"",
            "url = \"file:///etc/passwd\"",
            "erp[0].url",
        ),
        (
            "erp_method = \"UNZER_CARD\"",
            "erp_method = \"UNZER\\u0000CARD\"",
            "method[0].erp_method",
        ),
        (
            "erp_method = \"UNZER_CARD\"",
            "erp_method = \"ÜNZER\"",
            "method[0].erp_method",
        ),
        ("mode = \"expert\"", "mode = \"\\u202eexpert\"", "mode"),
        (
            "public_key = \"s-pub-abc\"",
            "public_key = \"x-pub-abc\"",
            "method[0].public_key",
        ),
        (
            "invoice_event = \"ZE\"",
            "invoice_event = \"\\t\"",
            "method[0].invoice_event",
        ),
        (
            "from = \"paybridge@example.com\"",
            "from = \"paybridge\"",
            "smtp.from",
        ),
        ("erp = \"main\"", "erp = \"gone\"", "method[0].erp"),
        ("[smtp]", "[smtp]\nbogus = 1", "bogus"),
    ];
    for (from, to, field) in cases {
        assert!(FULL_CONFIG.contains(from), "fixture lacks {from}");
        let text = FULL_CONFIG.replacen(from, to, 1);
        let e = Config::parse(&text, FILE).expect_err(to);
        check_config_error(&text, &e);
        check_no_secret(&text, &e.to_string());
        let want_line = text
            .lines()
            .position(|l| l.contains(to.lines().last().unwrap_or(to)))
            .map(|i| i + 1);
        assert_eq!(e.field, *field, "{to}: {e}");
        // Type errors of a whole [[erp]] entry point at its table; the rest at the line itself.
        if !field.starts_with("erp[") {
            assert_eq!(Some(e.line), want_line, "{to}: {e}");
        }
    }
}

#[test]
fn config_raw_nul_bom_crlf_and_deep_nesting_do_not_panic() {
    let texts = [
        String::new(),
        "\0".to_string(),
        format!("\u{feff}{FULL_CONFIG}"),
        FULL_CONFIG.replace('\n', "\r\n"),
        FULL_CONFIG.replace("id = \"acme\"", "id = \"ac\0me\""),
        format!(
            "{FULL_CONFIG}x = {}1{}\n",
            "[".repeat(50_000),
            "]".repeat(50_000)
        ),
        format!(
            "{FULL_CONFIG}x = {}1{}\n",
            "{a=".repeat(50_000),
            "}".repeat(50_000)
        ),
        format!("{FULL_CONFIG}# {}\n", "x".repeat(1 << 20)),
        "a.".repeat(100_000),
    ];
    for text in &texts {
        match Config::parse(text, FILE) {
            // BOM and CRLF are legal TOML.
            Ok(_) => {}
            Err(e) => {
                check_config_error(text, &e);
                check_no_secret(text, &e.to_string());
            }
        }
    }
    // CRLF: same content, same result.
    assert!(Config::parse(&texts[3], FILE).is_ok());
}

#[test]
fn config_load_of_a_missing_or_binary_file_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let e = Config::load(&missing).expect_err("missing file");
    assert!(e.file.ends_with("missing.toml"), "{e}");
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"[tenant]\nid = \"\xff\xfe\"\n").expect("write");
    let e = Config::load(&binary).expect_err("binary file");
    assert!(e.file.ends_with("binary.toml"), "{e}");
}

/// A raw secret that contains `:` is read as `scheme:rest` and the "scheme" — the start of the
/// secret — is printed.
#[test]
fn config_raw_secret_with_colon_is_not_echoed() {
    let text = FULL_CONFIG.replace("plain:PIXI-TOPSECRET-0815", "PIXI-TOPSECRET:0815");
    let e = Config::parse(&text, FILE).expect_err("raw secret");
    assert!(!e.to_string().contains("TOPSECRET"), "leaked: {e}");
}

/// An error on a line that starts with `[` makes the whole line the `field`, secret included.
#[test]
fn config_error_on_a_bracket_line_does_not_echo_it() {
    let text = FULL_CONFIG.replace(
        "[smtp]\n",
        "[smtp] password = \"plain:SMTP-TOPSECRET-99\"\n",
    );
    let e = Config::parse(&text, FILE).expect_err("junk after header");
    assert!(!e.to_string().contains("TOPSECRET"), "leaked: {e}");
}

/// Ids go into store keys `T#{tenant}#O#{conn}#{order}`; a `#` in a connection or tenant id
/// makes `OrderKey::from_pk` split them differently, so jobs land on the wrong connection.
#[test]
fn config_ids_cannot_break_store_keys() {
    for (from, to) in [
        ("id = \"main\"", "id = \"ma#in\""),
        ("id = \"acme\"", "id = \"ac#O#me\""),
    ] {
        let text = FULL_CONFIG
            .replacen(from, to, 1)
            .replace("erp = \"main\"", "erp = \"ma#in\"");
        match Config::parse(&text, FILE) {
            Err(e) => check_config_error(&text, &e),
            Ok(c) => {
                let key = OrderKey::new(&c.tenant.id, &c.erp[0].id, "4711");
                assert_eq!(
                    OrderKey::from_pk(&key.pk()).as_ref(),
                    Some(&key),
                    "{to} accepted but its store key does not round-trip"
                );
            }
        }
    }
}

// -------------------------------------------------------------------------------- webhook ---

const KNOWN_KEY: &str = "s-pub-known";

const APP_CONFIG: &str = r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "shop"
kind = "memory"
fixtures = "unused.json"

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

struct Fx {
    app: Arc<App>,
    psp: MemoryPsp,
}

fn fixture() -> Fx {
    let config = Config::parse(APP_CONFIG, "app.toml").expect("app config");
    let psp = MemoryPsp::new();
    let mut erps: HashMap<String, Arc<dyn paybridge_core::erp::Erp>> = HashMap::new();
    erps.insert("shop".into(), Arc::new(MemoryErp::new()));
    let app = App {
        config: Arc::new(config),
        store: Arc::new(SqliteStore::open_in_memory().expect("store")),
        queue: Arc::new(SqliteQueue::open_in_memory(10).expect("queue")),
        erps,
        psp: Arc::new(psp.clone()),
        notifier: Arc::new(LogNotifier),
        settings: Settings::default(),
        holder: "hostile".into(),
    };
    Fx {
        app: Arc::new(app),
        psp,
    }
}

async fn events(app: &App) -> Vec<EventRecord> {
    Repo::new(app.store.as_ref())
        .unapplied_events("acme", 1000, Utc::now())
        .await
        .expect("events")
}

async fn depth(app: &App) -> usize {
    app.queue.depth().await.expect("depth")
}

/// Nothing stored, nothing queued.
async fn assert_untouched(app: &App, what: &str) {
    assert_eq!(events(app).await.len(), 0, "event stored for {what}");
    assert_eq!(depth(app).await, 0, "job queued for {what}");
}

fn valid_hook(payment_id: &str) -> Value {
    json!({
        "event": "payment.completed",
        "publicKey": KNOWN_KEY,
        "retrieveUrl": format!("https://api.unzer.com/v1/payments/{payment_id}"),
        "paymentId": payment_id,
    })
}

fn is_unzer_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_event_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

/// Runs one body through `accept_webhook` on a fresh app and checks the store contract:
/// refused → nothing stored or queued; accepted → exactly one well-formed event and one job.
async fn judge(body: &[u8]) -> (Result<WebhookAck, WebhookError>, Vec<EventRecord>) {
    let fx = fixture();
    let r = fx.app.accept_webhook("unzer", body, Utc::now()).await;
    let evs = events(&fx.app).await;
    match &r {
        Err(_) => assert_untouched(&fx.app, &String::from_utf8_lossy(body)).await,
        Ok(ack) => {
            assert!(!ack.duplicate, "first delivery reported as duplicate");
            assert_eq!(evs.len(), 1, "accepted but stored {}", evs.len());
            assert_eq!(depth(&fx.app).await, 1);
            let ev = &evs[0];
            assert_eq!(ev.public_key, KNOWN_KEY);
            assert!(is_unzer_id(&ev.payment_id), "stored id {:?}", ev.payment_id);
            assert!(is_event_name(&ev.event), "stored event {:?}", ev.event);
        }
    }
    assert_eq!(
        fx.psp.fetches(),
        0,
        "accepting a webhook must not call the PSP"
    );
    (r, evs)
}

/// Strings that break naive parsers, paths and URLs.
const HOSTILE_STRINGS: &[&str] = &[
    "",
    " ",
    "../../v1/keypair",
    "..%2F..%2Fkeypair",
    "s-pay-1/../../x",
    "s-pay-1%2F..%2Fx",
    "s-pay-1?x=1",
    "s-pay-1#frag",
    "s-pay-1@evil.com",
    "s-pay-1\u{0}",
    "s-pay-1\n",
    "s-pay-１",
    "s-pay-\u{202e}1",
    "%2e%2e",
    "..",
    ".",
    "s-pay-1;DROP TABLE items",
    "http://169.254.169.254/latest/meta-data/",
    "https://evil.com@api.unzer.com/v1/payments/s-pay-1",
    "https://api.unzer.com.evil.com/v1/payments/s-pay-1",
    "file:///etc/passwd",
    "//evil.com/v1/payments/s-pay-1",
    "s-pub-known",
    "payment.completed",
    "s-pay-1",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(HOSTILE_STRINGS).prop_map(String::from),
        2 => "[ -~]{0,24}",
        1 => any::<String>(),
        1 => (1..3000usize).prop_map(|n| "x".repeat(n)),
        2 => "s-pay-[a-z0-9]{1,12}",
        1 => "[a-z]{1,10}\\.[a-z]{1,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field of a generated webhook: absent, a valid value, a hostile string or any JSON.
fn field(valid: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(Some(valid)),
        1 => Just(None),
        2 => hostile_string().prop_map(|s| Some(Value::String(s))),
        1 => json_value().prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Character-level mutations of a valid body.
    #[test]
    fn webhook_text_mutations_never_panic_and_refusals_store_nothing(
        edits in prop::collection::vec(edit(), 1..5)
    ) {
        let body = mutate(&valid_hook("s-pay-1").to_string(), &edits);
        let _ = rt().block_on(judge(body.as_bytes()));
    }

    /// Random bytes, as a body.
    #[test]
    fn webhook_random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = rt().block_on(judge(&body));
    }

    /// Every field absent, valid, hostile or of any JSON type, plus unknown extra fields: the
    /// decision follows the contract exactly.
    #[test]
    fn webhook_fields_of_any_type_follow_the_contract(
        event in field(json!("payment.completed")),
        public_key in field(json!(KNOWN_KEY)),
        retrieve_url in field(json!("https://api.unzer.com/v1/payments/s-pay-9")),
        payment_id in field(json!("s-pay-9")),
        extra in prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    ) {
        let mut obj = serde_json::Map::new();
        for (k, v) in extra {
            obj.insert(k, v);
        }
        for (k, v) in [
            ("event", &event),
            ("publicKey", &public_key),
            ("retrieveUrl", &retrieve_url),
            ("paymentId", &payment_id),
        ] {
            match v {
                Some(v) => obj.insert(k.to_string(), v.clone()),
                None => obj.remove(k),
            };
        }
        let body = Value::Object(obj).to_string();
        let (r, evs) = rt().block_on(judge(body.as_bytes()));
        let s = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
        let pid_ok = match &payment_id {
            Some(Value::String(p)) => is_unzer_id(p),
            None | Some(Value::Null) => true, // may come from retrieveUrl
            Some(_) => false,
        };
        let must_refuse = s(&public_key).as_deref() != Some(KNOWN_KEY)
            || !s(&event).is_some_and(|e| is_event_name(&e))
            || s(&retrieve_url).is_none()
            || !pid_ok;
        if must_refuse {
            prop_assert!(r.is_err(), "accepted {body}");
        }
        match (&r, &payment_id) {
            (Ok(_), Some(Value::String(p))) => prop_assert_eq!(&evs[0].payment_id, p),
            (Err(_), Some(Value::String(p))) if !must_refuse => {
                prop_assert!(false, "refused a valid webhook ({p}): {body}: {r:?}")
            }
            _ => {}
        }
        if let Err(WebhookError::UnknownAccount("public key")) = &r {
            prop_assert!(s(&public_key).as_deref() != Some(KNOWN_KEY));
        }
    }
}

/// Path traversal and URL tricks in `paymentId`, and in `retrieveUrl` when it is the only source
/// of the payment id: refused as malformed, nothing stored.
#[tokio::test]
async fn webhook_path_traversal_and_url_tricks_are_refused() {
    let bad_ids = [
        "../../v1/keypair",
        "..%2F..%2Fkeypair",
        "s-pay-1/../../x",
        "s-pay-1%2F..%2Fx",
        "s-pay-1?x=1",
        "s-pay-1#x",
        "s-pay-1@evil.com",
        "s-pay-1\u{0}",
        "s-pay-1\n",
        "s-pay-１",
        "s-pay-\u{202e}1",
        "..",
        "",
        " s-pay-1",
        "http://169.254.169.254/latest/meta-data/",
        &"a".repeat(65),
    ];
    for id in bad_ids {
        let mut hook = valid_hook("s-pay-1");
        hook["paymentId"] = json!(id);
        let (r, _) = judge(hook.to_string().as_bytes()).await;
        assert!(
            matches!(r, Err(WebhookError::Malformed(_))),
            "paymentId {id:?}: {r:?}"
        );
    }
    let bad_urls = [
        "https://api.unzer.com/v1/payments/../../keypair",
        "https://api.unzer.com/v1/payments/s-pay-1%2F..%2Fkeypair",
        "https://api.unzer.com/v1/payments/",
        "https://api.unzer.com/v1/payments",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://evil.com@api.unzer.com/v1/payments/%2e%2e",
        "https://api.unzer.com/v1/payments/s-pay-1?x=../../",
        "",
    ];
    for url in bad_urls {
        let hook =
            json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "retrieveUrl": url});
        let (r, _) = judge(hook.to_string().as_bytes()).await;
        assert!(
            matches!(r, Err(WebhookError::Malformed(_))),
            "retrieveUrl {url:?}: {r:?}"
        );
    }
}

/// The body's `retrieveUrl` is never fetched and never stored: a webhook pointing at the cloud
/// metadata service or another host stores only the (validated) payment id, no PSP call happens
/// on accept or when the worker applies the event.
#[tokio::test]
async fn webhook_foreign_retrieve_url_is_never_followed() {
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "https://evil.example/v1/payments/s-pay-1",
        "https://api.unzer.com@evil.example/v1/payments/s-pay-1",
        "gopher://127.0.0.1:6379/_FLUSHALL",
    ] {
        let fx = fixture();
        let hook = json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "retrieveUrl": url, "paymentId": "s-pay-1"});
        let r = fx
            .app
            .accept_webhook("unzer", hook.to_string().as_bytes(), Utc::now())
            .await;
        if r.is_ok() {
            let evs = events(&fx.app).await;
            assert_eq!(evs.len(), 1);
            assert_eq!(evs[0].payment_id, "s-pay-1");
            let stored = serde_json::to_string(&evs[0]).expect("json");
            assert!(
                !stored.contains("evil") && !stored.contains("169.254"),
                "{stored}"
            );
            while fx.app.work_once(10, Utc::now()).await.expect("work") > 0 {}
        } else {
            assert_untouched(&fx.app, url).await;
        }
        assert_eq!(fx.psp.fetches(), 0, "{url}: the PSP was called");
    }
}

#[tokio::test]
async fn webhook_wrong_types_missing_fields_and_unknown_keys_are_refused() {
    let bodies: Vec<Value> = vec![
        json!(null),
        json!([]),
        json!("payment.completed"),
        json!(1),
        json!({}),
        json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "paymentId": "s-pay-1"}),
        json!({"publicKey": KNOWN_KEY, "retrieveUrl": "https://api.unzer.com/v1/payments/s-pay-1"}),
        json!({"event": 1, "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": [KNOWN_KEY], "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "retrieveUrl": {"href": "u"}, "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": 42}),
        json!({"event": "payment.completed", "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": true}),
        json!({"event": "payment.completed", "publicKey": "s-pub-KNOWN", "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": "s-pub-known ", "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": "", "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.completed", "publicKey": "s-priv-test", "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment completed", "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "x".repeat(65), "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "", "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": "s-pay-1"}),
        json!({"event": "payment.complétéd", "publicKey": KNOWN_KEY, "retrieveUrl": "u", "paymentId": "s-pay-1"}),
    ];
    for b in bodies {
        let (r, _) = judge(b.to_string().as_bytes()).await;
        assert!(r.is_err(), "accepted {b}");
    }
    // Duplicate keys: serde refuses rather than picking one.
    let dup = br#"{"event":"payment.completed","publicKey":"s-pub-stranger","publicKey":"s-pub-known","retrieveUrl":"u","paymentId":"s-pay-1"}"#;
    let (r, _) = judge(dup).await;
    assert!(matches!(r, Err(WebhookError::Malformed(_))), "{r:?}");
    // Unknown extra fields are tolerated (Unzer may add some) but change nothing.
    let mut extra = valid_hook("s-pay-1");
    extra["paymentId2"] = json!("../../x");
    extra["__proto__"] = json!({"admin": true});
    let (r, evs) = judge(extra.to_string().as_bytes()).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(evs[0].payment_id, "s-pay-1");
}

#[tokio::test]
async fn webhook_oversize_huge_strings_and_deep_nesting_are_refused() {
    // One byte over the limit, though valid JSON.
    let body = valid_hook("s-pay-1").to_string();
    let over = format!("{body}{}", " ".repeat(MAX_WEBHOOK_BYTES + 1 - body.len()));
    assert_eq!(over.len(), MAX_WEBHOOK_BYTES + 1);
    let (r, _) = judge(over.as_bytes()).await;
    assert_eq!(r, Err(WebhookError::TooLarge(MAX_WEBHOOK_BYTES + 1)));
    // Exactly at the limit: judged on content (valid here).
    let at = format!("{body}{}", " ".repeat(MAX_WEBHOOK_BYTES - body.len()));
    let (r, _) = judge(at.as_bytes()).await;
    assert!(r.is_ok(), "{r:?}");
    // A megabyte.
    let (r, _) = judge(&vec![b'{'; 1 << 20]).await;
    assert!(matches!(r, Err(WebhookError::TooLarge(_))), "{r:?}");
    // Huge strings inside the limit.
    let mut hook = valid_hook("s-pay-1");
    hook["event"] = json!("a".repeat(MAX_WEBHOOK_BYTES - 200));
    let (r, _) = judge(hook.to_string().as_bytes()).await;
    assert!(matches!(r, Err(WebhookError::Malformed(_))), "{r:?}");
    let mut hook = valid_hook("s-pay-1");
    hook["publicKey"] = json!("s-pub-".repeat(2000));
    let (r, _) = judge(hook.to_string().as_bytes()).await;
    assert_eq!(r, Err(WebhookError::UnknownAccount("public key")));
    // Deep nesting inside the limit: serde_json's recursion limit, no stack overflow. A valid
    // webhook with a deeply nested unknown field is skipped over, and may be accepted.
    for (nested, valid) in [
        (format!("{}{}", "[".repeat(8000), "]".repeat(8000)), false),
        (
            format!(
                r#"{{"event":"payment.completed","publicKey":"s-pub-known","retrieveUrl":"u","paymentId":"s-pay-1","x":{}{}}}"#,
                "[".repeat(7000),
                "]".repeat(7000)
            ),
            true,
        ),
        (
            format!("{}1{}", "{\"a\":".repeat(2500), "}".repeat(2500)),
            false,
        ),
        (
            format!(
                r#"{{"event":{}"payment.completed"{},"publicKey":"s-pub-known","retrieveUrl":"u","paymentId":"s-pay-1"}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            false,
        ),
    ] {
        assert!(nested.len() <= MAX_WEBHOOK_BYTES);
        let (r, _) = judge(nested.as_bytes()).await;
        if !valid {
            assert!(matches!(r, Err(WebhookError::Malformed(_))), "{r:?}");
        }
    }
    // Invalid UTF-8 and a UTF-8 BOM.
    let (r, _) = judge(b"{\"event\":\"\xff\xfe\"}").await;
    assert!(matches!(r, Err(WebhookError::Malformed(_))), "{r:?}");
    let (r, _) = judge(format!("\u{feff}{body}").as_bytes()).await;
    assert!(r.is_err(), "{r:?}");
}

/// A valid webhook delivered 50 times (Unzer retries) — also re-serialized with other key order,
/// whitespace and an extra field — is stored and queued once.
#[tokio::test]
async fn webhook_replayed_fifty_times_is_stored_once() {
    let fx = fixture();
    let hook = valid_hook("s-pay-77");
    let pretty = serde_json::to_string_pretty(&hook).expect("json");
    let reordered = r#"{"paymentId":"s-pay-77","retrieveUrl":"https://api.unzer.com/v1/payments/s-pay-77","publicKey":"s-pub-known","event":"payment.completed"}"#;
    let mut extra = hook.clone();
    extra["resourceVersion"] = json!(3);
    let extra = extra.to_string();
    let compact = hook.to_string();
    let variants = [compact.as_str(), pretty.as_str(), reordered, extra.as_str()];
    let mut accepted = 0;
    for i in 0..50 {
        let ack = fx
            .app
            .accept_webhook("unzer", variants[i % variants.len()].as_bytes(), Utc::now())
            .await
            .expect("valid webhook");
        if !ack.duplicate {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "stored more than once");
    assert_eq!(events(&fx.app).await.len(), 1);
    assert_eq!(depth(&fx.app).await, 1, "a replay must not enqueue again");
}

// --------------------------------------------------------------------------------- router ---

async fn call(app: &Arc<App>, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = http::router(Arc::clone(app))
        .oneshot(req)
        .await
        .expect("router answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

fn post(ct: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post("/webhooks/unzer");
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).expect("request")
}

fn error_reason(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("error")?.as_str().map(str::to_string)
}

#[tokio::test]
async fn router_wrong_method_or_path_is_4xx_and_stores_nothing() {
    let fx = fixture();
    let body = valid_hook("s-pay-1").to_string();
    for (method, path) in [
        ("GET", "/webhooks/unzer"),
        ("PUT", "/webhooks/unzer"),
        ("DELETE", "/webhooks/unzer"),
        ("PATCH", "/webhooks/unzer"),
        ("POST", "/health"),
        ("POST", "/problems"),
        ("POST", "/webhooks/unzer/"),
        ("POST", "/webhooks/UNZER"),
        ("POST", "/webhooks/../webhooks/unzer"),
        ("POST", "/webhooks/unzer%2F"),
        ("GET", "/nope"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .expect("request");
        let (status, _) = call(&fx.app, req).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
    }
    assert_untouched(&fx.app, "wrong routes").await;
}

/// The module doc of http.rs promises `{"error": …}` on every error; axum's own 404/405 have an
/// empty body.
#[tokio::test]
async fn router_wrong_method_or_path_has_a_json_reason() {
    let fx = fixture();
    for (method, path) in [
        ("GET", "/webhooks/unzer"),
        ("POST", "/health"),
        ("GET", "/nope"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let (status, bytes) = call(&fx.app, req).await;
        assert!(status.is_client_error());
        assert!(
            error_reason(&bytes).is_some(),
            "{method} {path}: {status} {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[tokio::test]
async fn router_bad_bodies_are_4xx_with_a_json_reason() {
    let fx = fixture();
    let valid = valid_hook("s-pay-1").to_string();
    let over = vec![b' '; MAX_WEBHOOK_BYTES + 1];
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode)> = vec![
        (
            Some("application/json"),
            b"\xff\xfe\xfd".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            b"{\"event\":\"\xc3\x28\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            over.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (None, over, StatusCode::PAYLOAD_TOO_LARGE),
        (
            Some("text/plain"),
            b"hello".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"event=payment.completed".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("multipart/form-data; boundary=x"),
            b"--x\r\n\r\n--x--".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            valid.replace("s-pub-known", "s-pub-other").into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (ct, body, want) in cases {
        // The content type is not judged: the body is, whatever the header says.
        let (status, bytes) = call(&fx.app, post(ct, body.clone())).await;
        assert_eq!(status, want, "{ct:?} {:?}", String::from_utf8_lossy(&body));
        assert!(
            error_reason(&bytes).is_some(),
            "no JSON reason: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert_untouched(&fx.app, "bad bodies").await;
}

/// A content-length header that lies (small) over a large body must not bypass the limit.
#[tokio::test]
async fn router_lying_content_length_does_not_bypass_the_limit() {
    let fx = fixture();
    let req = Request::post("/webhooks/unzer")
        .header("content-type", "application/json")
        .header("content-length", "10")
        .body(Body::from(vec![b'{'; MAX_WEBHOOK_BYTES * 4]))
        .expect("request");
    let (status, bytes) = call(&fx.app, req).await;
    assert!(status.is_client_error(), "{status}");
    assert!(error_reason(&bytes).is_some());
    assert_untouched(&fx.app, "lying content-length").await;
}

/// Unzer's docs promise no content type: a valid body is accepted under any declared type, or
/// none, and stored once.
#[tokio::test]
async fn router_valid_body_is_accepted_under_any_content_type() {
    for ct in [
        Some("text/plain"),
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/xml"),
        Some("application/x-www-form-urlencoded"),
        Some(""),
        Some("not a media type"),
    ] {
        let fx = fixture();
        let body = valid_hook("s-pay-1").to_string();
        let (status, bytes) = call(&fx.app, post(ct, body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{ct:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let v: Value = serde_json::from_slice(&bytes).expect("JSON answer");
        assert_eq!(v, json!({ "status": "accepted" }), "{ct:?}");
        assert_eq!(events(&fx.app).await.len(), 1, "{ct:?}");
    }
}

/// A body that is not the webhook's JSON is 400 with a reason under any content type, the JSON
/// one included, and an oversize body 413 under any.
#[tokio::test]
async fn router_malformed_or_oversize_body_is_refused_under_any_content_type() {
    let fx = fixture();
    let over = vec![b' '; MAX_WEBHOOK_BYTES + 1];
    for ct in [
        Some("text/plain"),
        None,
        Some("application/json"),
        Some("application/octet-stream"),
    ] {
        for body in [&b"hello"[..], b"{\"event\":1}", b"", b"\xff\xfe"] {
            let (status, bytes) = call(&fx.app, post(ct, body.to_vec())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ct:?} {body:?}");
            let reason = error_reason(&bytes).expect("a JSON reason");
            assert!(
                reason.contains("not a valid Unzer webhook"),
                "{ct:?}: {reason}"
            );
        }
        let (status, bytes) = call(&fx.app, post(ct, over.clone())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{ct:?}");
        assert!(error_reason(&bytes).is_some());
    }
    assert_untouched(&fx.app, "malformed bodies").await;
}

proptest! {
    #![proptest_config(cases(128))]

    /// Any body under any content type: a 2xx only for an accepted webhook, otherwise a 4xx
    /// (never 5xx: the store works) with a JSON reason, and nothing stored.
    #[test]
    fn router_never_answers_5xx_to_client_errors(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(edit(), 0..4)
                .prop_map(|e| mutate(&valid_hook("s-pay-1").to_string(), &e).into_bytes()),
        ],
        ct in prop::option::of(prop::sample::select(vec![
            "application/json", "application/json; charset=utf-8", "text/plain", "text/xml",
            "application/x-www-form-urlencoded", "", "application/json; charset=utf-16",
        ])),
    ) {
        rt().block_on(async {
            let fx = fixture();
            let (status, bytes) = call(&fx.app, post(ct, body.clone())).await;
            assert!(!status.is_server_error(), "{status} for {:?}", String::from_utf8_lossy(&body));
            if status == StatusCode::OK {
                assert_eq!(events(&fx.app).await.len(), 1);
            } else {
                assert!(status.is_client_error(), "{status}");
                assert!(error_reason(&bytes).is_some(), "{status}: {:?}", String::from_utf8_lossy(&bytes));
                assert_untouched(&fx.app, &String::from_utf8_lossy(&body)).await;
            }
        });
    }
}

// ---------------------------------------------------------------------------------- money ---

/// The exact value of a decimal text (`[+-]digits[.digits][e±n]`), as (negative, integer digits
/// without leading zeros, fraction digits without trailing zeros); `None` for anything else.
fn exact(s: &str) -> Option<(bool, String, String)> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    // `mantissa[eE]exponent`: shift the decimal point (small exponents only).
    let (mantissa, shift) = match body.split_once(['e', 'E']) {
        None => (body, 0i64),
        Some((m, e)) => (m, e.parse::<i64>().ok().filter(|e| e.abs() <= 60)?),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + shift;
    let (int, frac) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let int = int.trim_start_matches('0').to_string();
    let frac = frac.trim_end_matches('0').to_string();
    let zero = int.is_empty() && frac.is_empty();
    Some((neg && !zero, int, frac))
}

fn money_exact(m: &Money) -> (bool, String, String) {
    exact(&m.amount().to_string()).expect("Money prints a plain decimal")
}

/// A money value is whole minor units and survives text and JSON round trips.
fn check_money(m: &Money) {
    let (_, _, frac) = money_exact(m);
    assert!(
        frac.len() as u32 <= m.currency().exponent(),
        "{m} has sub-minor digits"
    );
    let text = m.amount().to_string();
    assert_eq!(Money::parse(&text, m.currency()).as_ref(), Ok(m), "{text}");
    let json = serde_json::to_string(m).expect("serialize");
    assert_eq!(
        serde_json::from_str::<Money>(&json).expect("round trip"),
        *m,
        "{json}"
    );
    let _ = m.to_minor();
    let _ = m.to_string();
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["EUR", "JPY", "KWD", "CHF"])
        .prop_map(|c| Currency::from_code(c).expect("known"))
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Any text: an error or a valid Money; never a panic.
    #[test]
    fn money_parse_any_text_never_panics(
        s in prop_oneof![
            any::<String>(),
            "[-+ ]{0,2}[0-9_.eE ]{0,40}",
            "[0-9]{20,40}(\\.[0-9]{0,12})?",
        ],
        cur in currency(),
    ) {
        if let Ok(m) = Money::parse(&s, cur) {
            check_money(&m);
        }
    }

    /// Plain decimals of up to 28 significant digits: accepted exactly when they fit the
    /// currency, with the exact value.
    #[test]
    fn money_parse_plain_decimals_is_exact(
        neg in any::<bool>(),
        int in "[0-9]{1,14}",
        frac in "[0-9]{0,6}",
        cur in currency(),
    ) {
        let text = format!("{}{int}{}{frac}", if neg { "-" } else { "" }, if frac.is_empty() { "" } else { "." });
        let want = exact(&text).expect("plain");
        match Money::parse(&text, cur) {
            Ok(m) => {
                check_money(&m);
                prop_assert_eq!(money_exact(&m), want.clone(), "{} parsed as {}", text, m);
                prop_assert!(want.2.len() as u32 <= cur.exponent());
            }
            Err(_) => prop_assert!(want.2.len() as u32 > cur.exponent(), "refused {}", text),
        }
    }

    /// `Money` from JSON with any amount and currency value: an error or a valid Money.
    #[test]
    fn money_serde_any_json_never_panics(amount in json_value(), cur in json_value()) {
        let v = json!({"amount": amount, "currency": cur});
        if let Ok(m) = serde_json::from_value::<Money>(v.clone()) {
            check_money(&m);
        }
        if let Ok(m) = serde_json::from_str::<Money>(&v.to_string()) {
            check_money(&m);
        }
    }
}

#[test]
fn money_hostile_strings_are_refused_or_exact() {
    let eur = Currency::EUR;
    for s in [
        "1e400",
        "1e2",
        "1E2",
        "-1e-400",
        "NaN",
        "inf",
        "-inf",
        "",
        " ",
        ".",
        "-",
        "+-1",
        "--1",
        "0x10",
        "1,50",
        "1 000",
        "١٢٣",
        "１２",
        "12\u{0}",
        "\u{202e}12",
        "12.345",
        "0.001",
        "123456789012345678901234567890",
        "79228162514264337593543950336",
        "1.2.3",
        "€12",
        "12EUR",
        "1e",
        "e1",
    ] {
        match Money::parse(s, eur) {
            Err(_) => {}
            Ok(m) => {
                check_money(&m);
                let want = exact(s);
                assert_eq!(Some(money_exact(&m)), want, "{s:?} accepted as {m}");
            }
        }
    }
    // Accepted, with their exact values.
    for (s, minor) in [
        (" 1.00 ", 100),
        ("-0", 0),
        ("-0.00", 0),
        ("+1", 100),
        ("00001.10", 110),
        (".5", 50),
        ("12.3000000", 1230),
    ] {
        let m = Money::parse(s, eur).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(m.to_minor(), Ok(minor), "{s:?}");
        assert!(!m.is_negative(), "{s:?}");
    }
    // Past 28 digits the value cannot be held; a limit value still converts without panic.
    let big = Money::parse("79228162514264337593543950335", Currency::JPY).expect("Decimal::MAX");
    assert!(big.to_minor().is_err());
    assert!(big.checked_add(big).is_err());
}

/// `rust_decimal`'s `from_str` rounds past 28 significant digits and accepts `_` separators;
/// `Money::parse` takes its result as exact, so these become other amounts without an error.
#[test]
fn money_parse_never_changes_the_value() {
    for s in [
        "1.000000000000000000000000000001",
        "0.0000000000000000000000000000001",
        "9999999999999999999999999999.99",
        "1_000",
        "1_0.0_0",
    ] {
        match Money::parse(s, Currency::EUR) {
            Err(_) => {}
            Ok(m) => panic!("{s:?} accepted as {m}"),
        }
    }
}

#[test]
fn money_serde_hostile_json_is_refused_or_exact() {
    for (j, ok) in [
        (r#"{"amount":"9.99","currency":"EUR"}"#, Some(999)),
        (r#"{"amount":"-0","currency":"EUR"}"#, Some(0)),
        (r#"{"amount":"9.999","currency":"EUR"}"#, None),
        (r#"{"amount":"1","currency":"eur"}"#, None),
        (r#"{"amount":"1","currency":"EURO"}"#, None),
        (r#"{"amount":"1","currency":null}"#, None),
        (r#"{"amount":"1","currency":978}"#, None),
        (r#"{"amount":"1"}"#, None),
        (r#"{"currency":"EUR"}"#, None),
        (r#"{"amount":1e400,"currency":"EUR"}"#, None),
        (r#"{"amount":1.005,"currency":"EUR"}"#, None),
        (r#"{"amount":0.30000000000000004,"currency":"EUR"}"#, None),
        (r#"{"amount":true,"currency":"EUR"}"#, None),
        (r#"{"amount":[],"currency":"EUR"}"#, None),
        (r#"{"amount":"1e400","currency":"EUR"}"#, None),
        (r#"{"amount":"NaN","currency":"EUR"}"#, None),
        (
            r#"{"amount":123456789012345678901234567890123,"currency":"EUR"}"#,
            None,
        ),
        (r#"[]"#, None),
        (r#"null"#, None),
        (r#""9.99 EUR""#, None),
    ] {
        let r = serde_json::from_str::<Money>(j);
        match (r, ok) {
            (Ok(m), Some(minor)) => {
                check_money(&m);
                assert_eq!(m.to_minor(), Ok(minor), "{j}");
            }
            (Err(_), None) => {}
            (r, want) => panic!("{j}: {r:?}, wanted {want:?}"),
        }
    }
}

// ------------------------------------------------------------------------------- fixtures ---

fn valid_fixtures() -> String {
    let eur = |minor| Money::from_minor(minor, Currency::EUR);
    let order = ErpOrder {
        order_id: "10001".into(),
        mandant: "01".into(),
        shop_order_no: "S-10001".into(),
        psp_payment_id: Some("s-pay-10001".into()),
        payment_method: "UNZER_CARD".into(),
        status: OrderStatus::Hold,
        total: eur(4990),
        lines: vec![memory::line("10001-1", LineStatus::Open, eur(4990))],
        shipping_lock: false,
        invoices: vec![],
        credit_notes: vec![],
        customer_key: None,
    };
    let payment = PspPayment {
        payment_id: "s-pay-10001".into(),
        state: PaymentState::Pending,
        method: PaymentMethod::Card,
        currency: Currency::EUR,
        transactions: vec![PspTransaction {
            at: None,
            id: "s-aut-1".into(),
            kind: TxKind::Authorize,
            status: TxStatus::Success,
            amount: eur(4990),
            reference: None,
        }],
        bank_details: None,
        totals_only: false,
    };
    serde_json::to_string_pretty(&json!({"orders": [order], "payments": [payment]}))
        .expect("fixtures json")
}

/// `load_fixtures` on `bytes` in a temp file: Ok, or an error `path:line:col: …` with a line
/// inside the file.
fn check_fixtures(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixtures.json");
    std::fs::write(&path, bytes).expect("write");
    let r = memory::load_fixtures(&path).map(|_| ());
    if let Err(e) = &r {
        let prefix = format!("{}:", path.display());
        let rest = e
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("error does not start with the path: {e}"));
        if std::str::from_utf8(bytes).is_ok() {
            let mut parts = rest.splitn(3, ':');
            let line: usize = parts
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("no line in {e}"));
            let _col: usize = parts
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no column in {e}"));
            let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
        }
    }
    r
}

#[test]
fn fixtures_valid_file_loads() {
    check_fixtures(valid_fixtures().as_bytes()).expect("valid fixtures");
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn fixtures_mutations_give_located_errors(edits in prop::collection::vec(edit(), 1..5)) {
        let text = mutate(&valid_fixtures(), &edits);
        let _ = check_fixtures(text.as_bytes());
    }
}

#[test]
fn fixtures_hostile_content_gives_located_errors() {
    let valid = valid_fixtures();
    // (content, must it be refused?)
    let cases: Vec<(String, bool)> = vec![
        (String::new(), true),
        ("{".into(), true),
        ("null".into(), true),
        ("\u{0}".into(), true),
        (format!("\u{feff}{valid}"), true),
        (r#"{"orders": 5}"#.into(), true),
        (r#"{"orders": [{}]}"#.into(), true),
        (valid.replace("\"HOLD\"", "\"ON_HOLD\""), true),
        (valid.replacen("\"49.90\"", "\"49.905\"", 1), true),
        (valid.replacen("\"49.90\"", "\"1e400\"", 1), true),
        (valid.replacen("\"49.90\"", "1e400", 1), true),
        (valid.replacen("\"49.90\"", "\"-0\"", 1), false),
        (valid.replacen("\"EUR\"", "\"XXX\"", 1), true),
        (valid.replacen("\"EUR\"", "\"eur\"", 1), true),
        (valid.replacen("\"card\"", "\"bitcoin\"", 1), true),
        (valid.replacen("false", "\"false\"", 1), true),
        (
            valid.replacen("\"order_id\"", "\"order_id\": \"x\", \"order_id\"", 1),
            true,
        ),
        (
            format!(
                r#"{{"orders": [], "x": {}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            false, // ignored unknown field: skipped without recursion
        ),
        (format!("{valid}\n{valid}"), true),
        (
            r#"{"orders": [], "payments": [], "unknown": {"a": [1, 2]}}"#.into(),
            false,
        ),
    ];
    for (c, refused) in &cases {
        let r = check_fixtures(c.as_bytes());
        assert_eq!(r.is_err(), *refused, "{r:?} for {:.200}", c);
    }
}

/// A fixtures file that is not UTF-8 is reported without line and column.
#[test]
fn fixtures_invalid_utf8_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.json");
    std::fs::write(&path, b"{\n\"orders\": [\xff]}").expect("write");
    let e = memory::load_fixtures(&path)
        .map(|_| ())
        .expect_err("binary");
    assert!(
        e.starts_with(&format!("{}:2:", path.display())),
        "not located: {e}"
    );
}

/// Keeps `Decimal` in use for the exactness oracle's sanity check.
#[test]
fn exact_oracle_agrees_with_decimal_on_plain_values() {
    for s in ["0", "-0.10", "12.3400", "007", "-12"] {
        let d = Decimal::from_str(s).expect("decimal");
        assert_eq!(exact(&d.to_string()), exact(s), "{s}");
    }
}
