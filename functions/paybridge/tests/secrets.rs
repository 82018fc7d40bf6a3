//! No secret leaks: the whole scenario catalogue of `paybridge::demo` (every flow of
//! behaviour.md §3.1–§3.5, every payment method, failures that flag errors and send e-mails,
//! webhooks over a socket), plus a round of injected pixi and Unzer failures, runs through the
//! [`Harness`] with known, distinctive secrets:
//!
//! - the pixi SOAP password (HTTP Basic auth; the simulator only accepts it),
//! - every method's Unzer private key (HTTP Basic auth; the simulator only accepts those),
//! - the Paygate merchant's Blowfish and HMAC passwords (every Paygate request is encrypted and
//!   MAC'ed with them, every notify decrypted and verified; the simulator's merchant has exactly
//!   these, so a request it can open and whose MAC it accepts proves they were used),
//! - the SMTP password (AUTH PLAIN over STARTTLS to a real `python3 -m aiosmtpd` process that
//!   refuses mail from unauthenticated clients, so every mail that arrives proves it was used).
//!
//! The webhook endpoint and the HTTP API have no secret of their own in this build (Unzer
//! webhooks are matched by public key, Paygate notifies by the merchant's passwords above, the
//! listener has no authentication), so there is nothing else to plant.
//!
//! Every log line is captured at TRACE level for the whole run (human and JSON format, `log`
//! records of the dependencies included). Then every text paybridge produced is searched:
//! the log lines; everything written into pixi (comments, lock reasons, the authorization log,
//! customer-service fields, bookings, every SOAP parameter of every call); what was sent to
//! Unzer (paths, transactions, payments) and to Paygate (every decrypted request, payment and
//! notify); every e-mail that arrived (raw and decoded); the
//! `/problems` and `/health` bodies; the store (order records, history, ledger operations,
//! events). Each secret is looked for as is, percent-encoded, XML- and JSON-escaped, in hex and
//! in base64 at every alignment (which finds `Basic base64(user:password)`, `base64(key:)` and
//! SMTP `AUTH PLAIN base64(\0user\0password)` inside any larger blob), and so is the
//! `SECRET-CANARY` marker every secret carries, so that a cut-off secret is caught too.
//!
//! A second test runs `paybridge config check` on broken Paygate method configurations holding
//! the planted Paygate passwords (inline, via `env:` and `file:`): no output may contain any
//! 8-character piece of them.
//!
//! The SMTP server is [`paybridge_testkit::smtp_sink`], as in `tests/tests/email_smtp.rs`: it
//! needs `python3` with `aiosmtpd` and the `openssl` CLI (`.ci/run` installs aiosmtpd into
//! `.venv` and puts it first on `PATH`). A missing `aiosmtpd` fails the test; it never skips.

use paybridge::demo::{self, Harness, Method, Options, Outcome, Scenario};
use paybridge_core::psp::paygate::envelope;
use paybridge_core::store::repo::Repo;
use paybridge_testkit::paygate_sim::{self, Endpoint};
use paybridge_testkit::pixi_sim::SimFault;
use paybridge_testkit::smtp_sink::{SinkOptions, SmtpSink};
use paybridge_testkit::unzer_sim::Fault;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

// ------------------------------------------------------------------------------- the secrets

/// Carried by every planted secret: found anywhere, in any case, a secret (or part of it) leaked.
const MARKER: &str = "SECRET-CANARY";
/// The pixi user name: not a secret, but part of every pixi request's Basic auth value.
const PIXI_USER: &str = "pixi-leaktest";
/// With characters that change when percent-encoded (`/ + = &`) or XML-escaped (`&`).
const PIXI_PASSWORD: &str = "SECRET-CANARY-pixi/Pw+9=q&z";
const SMTP_USER: &str = "paybridge-mailer";
const SMTP_PASSWORD: &str = "SECRET-CANARY-smtp/Pw+7=x&y";
/// The Paygate merchant's Blowfish password (4 to 56 bytes) and HMAC password.
const PAYGATE_BLOWFISH_PW: &str = "SECRET-CANARY-pgBf/7+u=K&w";
const PAYGATE_HMAC_PW: &str = "SECRET-CANARY-pgMac/3+v=L&q";
const FROM: &str = "paybridge@example.com";
const TO: &str = "ops@merchant.example";

/// Each method's Unzer private key: shaped like a real one (`s-priv-` + letters, digits, `-`).
fn private_key(m: Method) -> String {
    format!("s-priv-2a10{MARKER}-{}-Zq9xW4", m.label().replace(' ', "-"))
}

/// The methods on Unzer (the Paygate ones have the Paygate passwords instead of a key).
fn unzer_methods() -> impl Iterator<Item = Method> {
    Method::ALL.into_iter().filter(|m| !m.is_paygate())
}

/// Every planted secret with a name for messages.
fn secrets() -> Vec<(String, String)> {
    let mut out = vec![
        ("the pixi password".to_string(), PIXI_PASSWORD.to_string()),
        ("the SMTP password".to_string(), SMTP_PASSWORD.to_string()),
        (
            "the Paygate Blowfish password".to_string(),
            PAYGATE_BLOWFISH_PW.to_string(),
        ),
        (
            "the Paygate HMAC password".to_string(),
            PAYGATE_HMAC_PW.to_string(),
        ),
    ];
    for m in unzer_methods() {
        out.push((format!("the Unzer private key of {m:?}"), private_key(m)));
    }
    out
}

// ------------------------------------------------------------------------------- needles

/// One form of a secret to look for.
#[derive(Debug, Clone)]
struct Needle {
    /// `the pixi password, base64 (HTTP Basic user:password)`.
    what: String,
    value: String,
    /// Compare ASCII case-insensitively (the marker).
    any_case: bool,
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The parts of `secret`'s base64 that are the same wherever it sits in a larger encoded blob:
/// for each of the three alignments, the 4-character groups made only of the secret's bytes.
fn base64_cores(secret: &[u8], alphabet: &[u8; 64]) -> Vec<String> {
    (0..3usize)
        .filter_map(|shift| {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(secret);
            let encoded = base64(&bytes, alphabet);
            let first = if shift == 0 { 0 } else { 1 };
            let last = bytes.len() / 3; // groups fully inside `bytes`
            (last > first).then(|| encoded[first * 4..last * 4].to_string())
        })
        .collect()
}

/// RFC 3986: everything but unreserved characters as `%XX` (upper- or lowercase hex).
fn percent_encode(s: &str, lower: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn hex(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// Every form of `value` that would show it to a reader of the text.
fn forms_of(name: &str, value: &str) -> Vec<Needle> {
    let mut out: Vec<Needle> = Vec::new();
    let mut push = |form: &str, v: String| {
        if !out.iter().any(|n| n.value == v) {
            out.push(Needle {
                what: format!("{name}, {form}"),
                value: v,
                any_case: false,
            });
        }
    };
    push("as is", value.to_string());
    push("percent-encoded", percent_encode(value, false));
    push(
        "percent-encoded (lowercase hex)",
        percent_encode(value, true),
    );
    push(
        "form-encoded",
        percent_encode(value, false).replace("%20", "+"),
    );
    push("XML-escaped", xml_escape(value));
    push(
        "JSON-escaped",
        serde_json::to_string(value)
            .expect("a string serializes")
            .trim_matches('"')
            .to_string(),
    );
    push("hex", hex(value, false));
    push("hex (uppercase)", hex(value, true));
    for (alphabet, label) in [(B64_STD, "base64"), (B64_URL, "base64url")] {
        for core in base64_cores(value.as_bytes(), alphabet) {
            push(label, core);
        }
    }
    out
}

/// What to look for: every secret in every form, the credentials exactly as they go over the
/// wire, and the marker.
fn needles() -> Vec<Needle> {
    let mut out = Vec::new();
    for (name, value) in secrets() {
        out.extend(forms_of(&name, &value));
    }
    let wire = |what: &str, raw: String| Needle {
        what: what.to_string(),
        value: base64(raw.as_bytes(), B64_STD),
        any_case: false,
    };
    out.push(wire(
        "the pixi Basic auth header value base64(user:password)",
        format!("{PIXI_USER}:{PIXI_PASSWORD}"),
    ));
    out.push(wire(
        "the SMTP AUTH PLAIN argument base64(\\0user\\0password)",
        format!("\0{SMTP_USER}\0{SMTP_PASSWORD}"),
    ));
    for m in unzer_methods() {
        out.push(wire(
            &format!("the Unzer Basic auth header value of {m:?} base64(key:)"),
            format!("{}:", private_key(m)),
        ));
    }
    out.push(Needle {
        what: "the marker every planted secret carries (any case)".into(),
        value: MARKER.to_ascii_lowercase(),
        any_case: true,
    });
    out.extend(
        forms_of("the marker", MARKER)
            .into_iter()
            .filter(|n| n.value != MARKER),
    );
    out
}

/// A needle found in a text: where, and the surrounding characters.
#[derive(Debug)]
struct Leak {
    source: String,
    what: String,
    context: String,
}

/// Every needle found in `text` (one hit per needle), with `source` naming the text.
fn leaks_in(source: &str, text: &str, needles: &[Needle]) -> Vec<Leak> {
    let lower = text.to_ascii_lowercase();
    needles
        .iter()
        .filter_map(|n| {
            let at = if n.any_case {
                lower.find(&n.value)
            } else {
                text.find(&n.value)
            }?;
            Some(Leak {
                source: source.to_string(),
                what: n.what.clone(),
                context: context(text, at, n.value.len()),
            })
        })
        .collect()
}

/// The line of `text` holding `at..at + len` (at most 600 characters of it).
fn context(text: &str, at: usize, len: usize) -> String {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at + len..]
        .find('\n')
        .map_or(text.len(), |i| at + len + i);
    text[start..end].chars().take(600).collect()
}

// ------------------------------------------------------------------------------- log capture

/// A growing in-memory log file.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide subscriber, installed once: every event and span of every target at TRACE
/// (and `log` records through `tracing-log`), as human-readable lines without colours and as
/// JSON lines, each into its own buffer.
fn captured_logs() -> &'static (Buffer, Buffer) {
    static LOGS: OnceLock<(Buffer, Buffer)> = OnceLock::new();
    LOGS.get_or_init(|| {
        let human = Buffer::default();
        let json = Buffer::default();
        let (h, j) = (human.clone(), json.clone());
        tracing_subscriber::registry()
            .with(LevelFilter::TRACE)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
                    .with_writer(move || h.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || j.clone()),
            )
            .try_init()
            .expect("this test installs the only global subscriber");
        (human, json)
    })
}

// ------------------------------------------------------------------------------- SMTP server

/// The SMTP server: STARTTLS and AUTH PLAIN with `SMTP_USER`/`SMTP_PASSWORD` required, so every
/// mail that arrives was sent with the planted password.
fn start_sink() -> SmtpSink {
    SmtpSink::start(SinkOptions::starttls_with_auth(SMTP_USER, SMTP_PASSWORD))
}

/// The `[smtp]` section for `sink`: STARTTLS, with the planted password.
fn smtp_config_section(sink: &SmtpSink) -> String {
    format!(
        r#"[smtp]
host = "127.0.0.1"
port = {port}
user = "{SMTP_USER}"
password = "plain:{SMTP_PASSWORD}"
from = "{FROM}"
to = "{TO}"
starttls = true
"#,
        port = sink.port()
    )
}

// ------------------------------------------------------------------------------- helpers

fn assert_all_ok(outcomes: &[Outcome]) {
    for o in outcomes {
        assert_eq!(
            o.actual,
            o.expected,
            "order {} ({}, {}) with the planted secrets:\n  expected {}\n  actual   {}",
            o.scenario.order,
            o.scenario.flow,
            o.scenario.method.label(),
            o.expected,
            o.actual
        );
    }
}

async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("paybridge answers")
        .text()
        .await
        .expect("a body")
}

/// Orders of the injected-failure round (after the catalogue's 10001–10038).
const FAULT_CAPTURE_ORDER: i64 = 10901;
const FAULT_REFUND_ORDER: i64 = 10902;
/// The Unzer error message of the declined refund: it must reach the operator's e-mail.
const DECLINE_MESSAGE: &str = "refund refused by the acquirer (leak test)";
/// Orders of the injected Paygate failures: a capture answered HTTP 500 after Paygate made it
/// (reconciled by a same-ReqId replay) and a credit the acquirer refuses.
const PAYGATE_FAULT_CAPTURE_ORDER: i64 = 11901;
const PAYGATE_FAULT_CREDIT_ORDER: i64 = 11902;
/// Paygate's description of the refused credit: it must reach the operator's e-mail.
const PAYGATE_DECLINE_MESSAGE: &str = "credit refused by the acquirer (paygate leak test)";

/// The injected-failure round (faults armed in the test): pixi unavailable on a release, a
/// SOAP fault on a comment, an HTML page instead of a SOAP reply, Unzer HTTP 500 and 429 on
/// charges, and a refund the acquirer refuses.
fn fault_scenarios() -> Vec<Scenario> {
    let mut capture = demo::scenarios(&["3.3-expert"])
        .expect("catalogue key")
        .remove(0);
    capture.order = FAULT_CAPTURE_ORDER;
    capture.key = "leak-fault-capture";
    let mut refund = demo::scenarios(&["3.5-expert"])
        .expect("catalogue key")
        .remove(0);
    refund.order = FAULT_REFUND_ORDER;
    refund.key = "leak-fault-refund";
    vec![capture, refund]
}

/// The injected Paygate failures (faults armed in the test).
fn paygate_fault_scenarios() -> Vec<Scenario> {
    let mut capture = demo::scenarios(&["pg-3.3-expert"])
        .expect("catalogue key")
        .remove(0);
    capture.order = PAYGATE_FAULT_CAPTURE_ORDER;
    capture.key = "leak-paygate-fault-capture";
    let mut credit = demo::scenarios(&["pg-3.5-expert"])
        .expect("catalogue key")
        .remove(0);
    credit.order = PAYGATE_FAULT_CREDIT_ORDER;
    credit.key = "leak-paygate-fault-credit";
    vec![capture, credit]
}

// ------------------------------------------------------------------------------- the test

/// The whole catalogue and a round of failures with planted secrets; then no log line, ERP
/// text, PSP request, e-mail, HTTP answer or store entry contains any of them in any form.
#[tokio::test]
async fn no_secret_in_any_log_line_erp_text_mail_problem_page_or_store_entry() {
    let (human, json) = captured_logs();
    let sink = start_sink();
    let h = Harness::start_with(Options {
        pixi_login: Some((PIXI_USER.into(), PIXI_PASSWORD.into())),
        private_key: Some(private_key),
        paygate_keys: Some((PAYGATE_BLOWFISH_PW.into(), PAYGATE_HMAC_PW.into())),
        extra_config: Some(smtp_config_section(&sink)),
        smtp_tls_roots: Some(sink.cert_pem().expect("a STARTTLS sink").to_vec()),
        ..Options::default()
    })
    .await
    .expect("the harness starts with the planted secrets");

    // The secrets really are the ones in use.
    let config = std::fs::read_to_string(&h.config_path).expect("the configuration");
    for (name, value) in secrets() {
        assert!(
            config.contains(&format!("\"plain:{value}\"")),
            "{name} is configured"
        );
    }
    assert_eq!(
        (h.pixi.user(), h.pixi.password()),
        (PIXI_USER.to_string(), PIXI_PASSWORD.to_string())
    );

    // Every flow, every method, webhooks over the socket.
    let catalogue = demo::catalogue();
    let outcomes = h.run(&catalogue).await.expect("the catalogue runs");
    assert_eq!(outcomes.len(), catalogue.len());
    assert_all_ok(&outcomes);
    let methods: BTreeSet<String> = outcomes
        .iter()
        .map(|o| format!("{:?}", o.scenario.method))
        .collect();
    assert_eq!(methods.len(), Method::ALL.len(), "every method ran");

    // Failures: some are retried, some flagged for a human.
    h.pixi
        .fail_next_call("pixiReleaseOrder", SimFault::Unavailable, 1);
    h.pixi.fail_next_call(
        "pixiCreateOrderComment",
        SimFault::SoapFault("deadlock victim (leak test)".into()),
        1,
    );
    h.pixi
        .fail_next_call("pixiPaySetAuthorizationStatus", SimFault::BrokenReply, 1);
    h.unzer.inject_on("/charges", Fault::ServerErrorBefore, 1);
    h.unzer.inject_on("/charges", Fault::TooManyRequests, 1);
    h.unzer.inject_on(
        "/cancels",
        Fault::Decline {
            code: "API.340.100.024".into(),
            message: DECLINE_MESSAGE.into(),
        },
        1,
    );
    let faulted = h
        .run(&fault_scenarios())
        .await
        .expect("the failure round runs");
    // Retried (Unzer 500 and 429) or flagged for a human (pixi's HTML reply and SOAP fault,
    // the acquirer's refusal): either way texts with error details in logs, ERP and mails.
    for o in &faulted {
        assert!(
            !o.actual.problems.is_empty(),
            "order {} is flagged: {}",
            o.scenario.order,
            o.actual
        );
    }
    let statuses: BTreeSet<u16> = h.unzer.requests().iter().map(|r| r.status).collect();
    for status in [500, 429, 400] {
        assert!(
            statuses.contains(&status),
            "an Unzer {status}: {statuses:?}"
        );
    }

    // Paygate failures: a capture made but answered 500 (an unknown outcome, reconciled), and a
    // credit the acquirer refuses (flagged, its description mailed).
    h.paygate
        .inject_on(Endpoint::Capture, paygate_sim::Fault::ServerErrorAfter, 1);
    h.paygate.inject_on(
        Endpoint::Credit,
        paygate_sim::Fault::Decline {
            code: paygate_sim::DECLINED.into(),
            description: PAYGATE_DECLINE_MESSAGE.into(),
        },
        1,
    );
    let paygate_faulted = h
        .run(&paygate_fault_scenarios())
        .await
        .expect("the Paygate failure round runs");
    let refused = paygate_faulted
        .iter()
        .find(|o| o.scenario.order == PAYGATE_FAULT_CREDIT_ORDER)
        .expect("the credit order ran");
    assert!(
        !refused.actual.problems.is_empty(),
        "the refused credit is flagged: {}",
        refused.actual
    );
    let paygate_calls = h.paygate.calls();
    assert!(
        paygate_calls
            .iter()
            .any(|c| c.endpoint == Endpoint::Capture && c.http_status == 500),
        "a Paygate capture answered 500"
    );
    assert!(
        paygate_calls
            .iter()
            .any(|c| c.endpoint == Endpoint::Credit
                && c.code.as_deref() == Some(paygate_sim::DECLINED)),
        "a Paygate credit refused"
    );

    // Unknown key and malformed body on the webhook listener (answered, nothing stored).
    let client = reqwest::Client::new();
    let unknown = client
        .post(h.webhook_url())
        .json(&serde_json::json!({
            "event": "payment.completed",
            "publicKey": "s-pub-unknown",
            "retrieveUrl": format!("{}/v1/payments/s-pay-1", h.unzer.base_url()),
            "paymentId": "s-pay-1",
        }))
        .send()
        .await
        .expect("paybridge answers");
    assert_eq!(unknown.status().as_u16(), 401);
    let malformed = client
        .post(h.webhook_url())
        .body("{not json")
        .send()
        .await
        .expect("paybridge answers");
    assert_eq!(malformed.status().as_u16(), 400);
    // Paygate notifies: one sealed with another Blowfish password, one with a MAC of another
    // HMAC password, one for an unknown MerchantID; all refused, nothing stored.
    let notify_url = h.url("/webhooks/paygate");
    let plain = |hmac: &[u8]| {
        let mac = envelope::mac(
            hmac,
            &envelope::response_mac_message(
                "0123456789abcdef0123456789abcdef",
                "leak-1",
                demo::PAYGATE_MERCHANT,
                "OK",
                "00000000",
            ),
        );
        format!(
            "mid={}&PayID=0123456789abcdef0123456789abcdef&XID=x&TransID=leak-1&Status=OK&Code=00000000&MAC={mac}",
            demo::PAYGATE_MERCHANT
        )
    };
    for (outer_mid, blowfish, hmac) in [
        (demo::PAYGATE_MERCHANT, "notThePlantedKey", PAYGATE_HMAC_PW),
        (
            demo::PAYGATE_MERCHANT,
            PAYGATE_BLOWFISH_PW,
            "not-the-planted-hmac",
        ),
        ("leakTestStranger", PAYGATE_BLOWFISH_PW, PAYGATE_HMAC_PW),
    ] {
        let (data, len) =
            envelope::encrypt(blowfish.as_bytes(), &plain(hmac.as_bytes())).expect("seal");
        let refused = client
            .post(&notify_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("MerchantID={outer_mid}&Len={len}&Data={data}"))
            .send()
            .await
            .expect("paybridge answers");
        assert_eq!(refused.status().as_u16(), 401, "{outer_mid} {blowfish}");
    }
    let malformed = client
        .post(&notify_url)
        .body("Len=12&Len=12&Data=00")
        .send()
        .await
        .expect("paybridge answers");
    assert_eq!(malformed.status().as_u16(), 400);

    let pixi_requests = h.pixi.requests();
    assert!(
        pixi_requests.len() > 500,
        "{} pixi calls",
        pixi_requests.len()
    );
    assert_eq!(
        h.pixi.auth_failures(),
        0,
        "every pixi call carried the planted password"
    );
    let unzer_requests = h.unzer.requests();
    let keys: BTreeSet<String> = unzer_methods().map(private_key).collect();
    assert!(
        unzer_requests.len() > 100,
        "{} Unzer calls",
        unzer_requests.len()
    );
    for r in &unzer_requests {
        assert!(
            r.key.as_ref().is_some_and(|k| keys.contains(k)) && r.status != 401,
            "an Unzer call without a planted key: {} {} → {}",
            r.method,
            r.path,
            r.status
        );
    }

    // Every Paygate request was opened with the planted Blowfish password (its fields read)
    // and none was refused for its MAC (the planted HMAC password).
    let paygate_calls = h.paygate.calls();
    let server_to_server: Vec<_> = paygate_calls
        .iter()
        .filter(|c| {
            matches!(
                c.endpoint,
                Endpoint::Capture | Endpoint::Credit | Endpoint::Reverse | Endpoint::Inquire
            )
        })
        .collect();
    assert!(
        server_to_server.len() > 50,
        "{} Paygate calls",
        server_to_server.len()
    );
    for c in &server_to_server {
        assert!(
            c.field("MerchantID") == Some(demo::PAYGATE_MERCHANT)
                && c.code.as_deref() != Some("20010008"),
            "a Paygate call without the planted passwords: {:?} → {} {:?}",
            c.endpoint,
            c.http_status,
            c.code
        );
    }
    let paygate_notifies = h.paygate.notifies();
    assert!(
        paygate_notifies.iter().any(|n| n.result == Ok(200)),
        "a Paygate notify was accepted with the planted passwords"
    );

    // ---------------------------------------------------------------- what to search

    let mut texts: Vec<(String, String)> = Vec::new();
    let all_orders: Vec<&Outcome> = outcomes
        .iter()
        .chain(faulted.iter())
        .chain(paygate_faulted.iter())
        .collect();

    // pixi: everything paybridge wrote or could have written.
    let mut comments = 0;
    for o in &all_orders {
        let nr = o.scenario.order;
        for c in h.pixi.comments(nr) {
            comments += 1;
            texts.push((format!("pixi comment of order {nr}"), c));
        }
        texts.push((
            format!("pixi order {nr}"),
            format!("{:?}", h.pixi.order(nr)),
        ));
        texts.push((
            format!("pixi customer-service fields of order {nr}"),
            format!("{:?}", h.pixi.transfer_fields(nr)),
        ));
    }
    assert!(comments > all_orders.len(), "{comments} comments");
    texts.push(("pixi bookings".into(), format!("{:#?}", h.pixi.bookings())));
    for (i, r) in pixi_requests.iter().enumerate() {
        texts.push((format!("pixi request {i} ({})", r.call), format!("{r:?}")));
    }

    // Unzer: what paybridge sent (not the key it authenticates with: that is the recorded
    // `key`, Unzer's to see).
    for r in &unzer_requests {
        texts.push((
            "Unzer request".into(),
            format!("{} {} {}", r.method, r.path, r.status),
        ));
    }
    for o in &all_orders {
        if let Some(pid) = &o.payment_id {
            texts.push((
                format!("Unzer payment {pid}"),
                format!("{:?}", h.unzer.payment_json(pid)),
            ));
            texts.push((
                format!("Unzer transactions of {pid}"),
                format!("{:#?}", h.unzer.transactions(pid)),
            ));
        }
    }

    // Paygate: every request as it arrived (decrypted, with its MAC), every payment, every
    // notify the simulator sent.
    for (i, c) in paygate_calls.iter().enumerate() {
        texts.push((
            format!("Paygate request {i} ({:?})", c.endpoint),
            format!("{c:?}"),
        ));
    }
    for o in &all_orders {
        if let Some(pid) = &o.payment_id
            && let Some(p) = h.paygate.payment(pid)
        {
            texts.push((format!("Paygate payment {pid}"), format!("{p:?}")));
        }
    }
    for (i, n) in paygate_notifies.iter().enumerate() {
        texts.push((format!("Paygate notify {i}"), format!("{n:?}")));
    }

    // paybridge's own answers and the demo's table.
    let problems = get_text(&h.url("/problems")).await;
    let problems_json: Value = serde_json::from_str(&problems).expect("/problems is JSON");
    assert!(
        problems.contains(&FAULT_REFUND_ORDER.to_string()) && problems.contains("10003"),
        "/problems lists the flagged orders: {problems_json}"
    );
    texts.push(("GET /problems".into(), problems));
    texts.push(("GET /health".into(), get_text(&h.url("/health")).await));
    texts.push(("the demo table".into(), demo::table(&outcomes).join("\n")));

    // The store: order records (flags and their messages), history, ledger operations, events.
    let repo = Repo::new(h.app.store.as_ref());
    let mut history_entries = 0;
    for o in &all_orders {
        let key = h.order_key(o.scenario.order);
        let history = repo.history(&key, h.now()).await.expect("store");
        history_entries += history.len();
        for e in &history {
            texts.push((
                format!("history of order {}", o.scenario.order),
                format!("{e:?}"),
            ));
        }
        texts.push((
            format!("store record of order {}", o.scenario.order),
            format!("{:?}", repo.order(&key, h.now()).await.expect("store")),
        ));
        texts.push((
            format!("ledger operations of order {}", o.scenario.order),
            format!("{:?}", repo.ops(&key, h.now()).await.expect("store")),
        ));
    }
    assert!(
        history_entries > all_orders.len(),
        "{history_entries} history entries"
    );
    texts.push((
        "unapplied PSP events".into(),
        format!(
            "{:?}",
            repo.unapplied_events(demo::TENANT, 1000, h.now())
                .await
                .expect("store")
        ),
    ));

    // E-mails that arrived at the SMTP server (so they passed AUTH with the planted password).
    let mails = sink.mails();
    let flagged: Vec<i64> = all_orders
        .iter()
        .filter(|o| !o.actual.problems.is_empty())
        .map(|o| o.scenario.order)
        .collect();
    assert!(flagged.len() >= 5, "orders with problems: {flagged:?}");
    assert!(
        mails.len() >= flagged.len(),
        "{} mails for {} flagged orders; server log:\n{}",
        mails.len(),
        flagged.len(),
        sink.log()
    );
    for nr in &flagged {
        assert!(
            mails
                .iter()
                .any(|m| m.subject.contains(&format!("order {nr} "))),
            "no error e-mail about order {nr}: {:?}",
            mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
    }
    assert!(
        mails.iter().any(|m| m.body.contains(DECLINE_MESSAGE)),
        "the acquirer's message reached the operator"
    );
    assert!(
        mails
            .iter()
            .any(|m| m.body.contains(PAYGATE_DECLINE_MESSAGE)),
        "Paygate's refusal reached the operator"
    );
    assert!(
        mails
            .iter()
            .any(|m| m.body.contains("deadlock victim (leak test)")),
        "pixi's SOAP fault reached the operator"
    );
    for (i, m) in mails.iter().enumerate() {
        assert_eq!(m.to, TO);
        let subject = &m.subject;
        assert!(subject.starts_with("[paybridge] order "), "{subject}");
        for (part, text) in [("raw", &m.raw), ("subject", &m.subject), ("body", &m.body)] {
            texts.push((format!("e-mail {i} ({subject}), {part}"), text.clone()));
        }
    }

    // Last: the logs, with everything above done.
    h.shutdown().await.expect("the listener stops");
    let human = human.text();
    let json = json.text();
    let human_lines = human.lines().count();
    let json_lines = json.lines().count();
    assert!(human_lines > 5_000, "only {human_lines} log lines captured");
    assert!(
        json_lines > 5_000,
        "only {json_lines} JSON log lines captured"
    );
    for expected in [
        "pixi call",
        "unzer reply",
        "Paygate reversal not sent",
        "PSP: capture",
        "ERP write failed",
        "PSP webhook refused",
        "secrets resolved",
        "rustls", // `log` records of a dependency (the SMTP connection's TLS handshake)
        "TRACE",
        "DEBUG",
        "INFO",
        "WARN",
    ] {
        assert!(
            human.contains(expected),
            "no log line contains {expected:?}"
        );
    }
    for line in json.lines().take(100) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    // ---------------------------------------------------------------- the grep

    let needles = needles();
    let mut leaks: Vec<Leak> = Vec::new();
    leaks.extend(leaks_in("log (human format)", &human, &needles));
    leaks.extend(leaks_in("log (JSON format)", &json, &needles));
    for (source, text) in &texts {
        leaks.extend(leaks_in(source, text, &needles));
    }
    let report: Vec<String> = leaks
        .iter()
        .map(|l| format!("- {} in {}:\n    {}", l.what, l.source, l.context))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} secret leak(s) in {} texts and {} + {} log lines:\n{}",
        leaks.len(),
        texts.len(),
        human_lines,
        json_lines,
        report.join("\n")
    );
    println!(
        "no leak: {} forms of {} secrets searched in {} + {} log lines and {} texts \
         ({} pixi comments, {} history entries, {} e-mails)",
        needles.len(),
        secrets().len(),
        human_lines,
        json_lines,
        texts.len(),
        comments,
        history_entries,
        mails.len()
    );
}

// ------------------------------------------------------------------ Paygate config errors

/// The environment variable and key file the `env:` and `file:` shapes resolve.
const PAYGATE_ENV: &str = "PAYBRIDGE_LEAKTEST_PAYGATE_KEY";
const PAYGATE_KEY_FILE: &str = "keys/paygate.key";

/// Every 8-character piece of `secret`.
fn pieces(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars.windows(8).map(|w| w.iter().collect()).collect()
}

/// `paybridge config check` on broken Paygate method configurations holding the planted
/// Paygate passwords: each exits 2 with an `error: file:…` line, and neither stdout nor stderr
/// holds any 8-character piece of either password (nor of the `SECRET-CANARY` marker).
#[test]
fn no_paygate_password_piece_in_config_check_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(
        dir.path().join(PAYGATE_KEY_FILE),
        format!("{PAYGATE_BLOWFISH_PW}\n"),
    )
    .expect("key file");
    let base = demo::config_toml_with_keys(
        "http://127.0.0.1:9/soap/pixiAPP/",
        PIXI_USER,
        PIXI_PASSWORD,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        private_key,
    )
    .replace(
        &format!("\"plain:{}\"", demo::PAYGATE_BLOWFISH),
        &format!("\"plain:{PAYGATE_BLOWFISH_PW}\""),
    )
    .replace(
        &format!("\"plain:{}\"", demo::PAYGATE_HMAC),
        &format!("\"plain:{PAYGATE_HMAC_PW}\""),
    );
    let key_line = format!("encryption_key = \"plain:{PAYGATE_BLOWFISH_PW}\"");
    let mac_line = format!("hmac_key = \"plain:{PAYGATE_HMAC_PW}\"");
    assert!(base.contains(&key_line) && base.contains(&mac_line));
    // One edit of the first Paygate method: its key line, its MAC line, or a line after them.
    let key = |with: &str| base.replacen(&key_line, with, 1);
    let mac = |with: &str| base.replacen(&mac_line, with, 1);
    let both = |extra: &str| base.replacen(&mac_line, &format!("{mac_line}\n{extra}"), 1);
    // A field of the first Paygate method after its key line.
    let after_key = |edit: fn(&str) -> String| {
        let at = base.find(&key_line).expect("the key line");
        format!("{}{}", &base[..at], edit(&base[at..]))
    };
    let (bf, hm) = (PAYGATE_BLOWFISH_PW, PAYGATE_HMAC_PW);
    let shapes: Vec<(&str, String)> = vec![
        // Keys the cipher cannot take.
        (
            "an AES account with the Blowfish password",
            both("encryption = \"aes\""),
        ),
        (
            "a Blowfish password over 56 bytes",
            key(&format!("encryption_key = \"plain:{bf}{bf}{bf}\"")),
        ),
        (
            "the env: password on an AES account",
            key(&format!(
                "encryption_key = \"env:{PAYGATE_ENV}\"\nencryption = \"aes\""
            )),
        ),
        (
            "the file: password on an AES account",
            key(&format!(
                "encryption_key = \"file:{PAYGATE_KEY_FILE}\"\nencryption = \"aes\""
            )),
        ),
        ("an empty HMAC password", mac("hmac_key = \"plain:\"")),
        // Secret fields written wrong.
        (
            "the password without a scheme",
            key(&format!("encryption_key = \"{bf}\"")),
        ),
        (
            "an unknown scheme",
            mac(&format!("hmac_key = \"vault:{hm}\"")),
        ),
        ("unterminated", mac(&format!("hmac_key = \"plain:{hm}"))),
        ("unquoted", mac(&format!("hmac_key = plain:{hm}"))),
        ("as an array", mac(&format!("hmac_key = [\"plain:{hm}\"]"))),
        (
            "as a table",
            mac(&format!("hmac_key = {{ value = \"plain:{hm}\" }}")),
        ),
        (
            "in a multi-line string with a bad escape",
            key(&format!("encryption_key = \"\"\"plain:{bf}\\q\"\"\"")),
        ),
        ("misspelt", mac(&format!("hmac_kye = \"plain:{hm}\""))),
        (
            "twice",
            mac(&format!("{mac_line}\nhmac_key = \"plain:{bf}\"")),
        ),
        (
            "as private_key",
            both(&format!("private_key = \"plain:{hm}\"")),
        ),
        ("the HMAC password missing", mac("")),
        ("the Blowfish password missing", key("")),
        (
            "an unresolvable env: reference",
            key("encryption_key = \"env:PAYBRIDGE_LEAKTEST_UNSET\""),
        ),
        (
            "another method of the merchant with other keys",
            base.replacen(&mac_line, &format!("hmac_key = \"plain:{bf}\""), 1),
        ),
        // Other fields broken beside the passwords.
        ("an unknown cipher", both("encryption = \"des\"")),
        (
            "an unknown psp_method",
            after_key(|tail| tail.replacen("psp_method = \"card\"", "psp_method = \"bogus\"", 1)),
        ),
        (
            "a non-loopback http api_host",
            after_key(|tail| {
                tail.replacen(
                    "api_host = \"http://127.0.0.1:9\"",
                    "api_host = \"http://paygate.example\"",
                    1,
                )
            }),
        ),
        (
            "a bad merchant_id",
            base.replacen(
                &format!("merchant_id = \"{}\"", demo::PAYGATE_MERCHANT),
                "merchant_id = \"not a merchant id!\"",
                1,
            ),
        ),
    ];
    let run = |n: usize, text: &str| {
        let path = dir.path().join(format!("paygate-{n:02}.toml"));
        std::fs::write(&path, text).expect("write config");
        Command::new(env!("CARGO_BIN_EXE_paybridge"))
            .args(["config", "check", "--config"])
            .arg(&path)
            .env(PAYGATE_ENV, PAYGATE_BLOWFISH_PW)
            .env("RUST_LOG", "trace")
            .output()
            .expect("the binary runs")
    };
    // The base itself is fine (so every failure below is the shape's).
    let ok = run(0, &base);
    assert_eq!(
        (ok.status.code(), String::from_utf8_lossy(&ok.stdout).trim()),
        (Some(0), "ok"),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let mut needles: Vec<String> = pieces(PAYGATE_BLOWFISH_PW);
    needles.extend(pieces(PAYGATE_HMAC_PW));
    let mut failures = Vec::new();
    for (n, (name, text)) in shapes.iter().enumerate() {
        assert_ne!(text, &base, "{name} changes the configuration");
        let out = run(n + 1, text);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", out.status.code()));
        }
        if !stderr.lines().any(|l| l.starts_with("error: ")) {
            problems.push("no `error: ` line".to_string());
        }
        let lower = format!("{stdout}\n{stderr}").to_ascii_lowercase();
        if lower.contains(&MARKER.to_ascii_lowercase()) {
            problems.push("the marker is printed".to_string());
        }
        for piece in &needles {
            if stdout.contains(piece) || stderr.contains(piece) {
                problems.push(format!("the piece {piece:?} is printed"));
                break;
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} shapes:\n{}",
        failures.len(),
        shapes.len(),
        failures.join("\n\n")
    );
}

/// The search itself: it finds every planted secret in every form it claims to, including
/// inside larger base64 blobs at every alignment (the expected wire values were computed with
/// Python's `base64` module, not with this file's encoder), and finds nothing in clean text.
#[test]
fn the_leak_search_finds_each_form_and_nothing_in_clean_text() {
    let needles = needles();
    let forms = |text: &str| -> Vec<String> {
        leaks_in("sample", text, &needles)
            .into_iter()
            .map(|l| l.what)
            .collect()
    };
    let assert_found = |text: &str, what: &str| {
        let found = forms(text);
        assert!(
            found.iter().any(|w| w.contains(what)),
            "{what:?} not found in {text:?}; found {found:?}"
        );
    };
    assert_found(
        "authorization: Basic cGl4aS1sZWFrdGVzdDpTRUNSRVQtQ0FOQVJZLXBpeGkvUHcrOT1xJno=",
        "the pixi Basic auth header value",
    );
    assert_found(
        "authorization: Basic cGl4aS1sZWFrdGVzdDpTRUNSRVQtQ0FOQVJZLXBpeGkvUHcrOT1xJno=",
        "the pixi password, base64",
    );
    assert_found(
        "C: AUTH PLAIN AHBheWJyaWRnZS1tYWlsZXIAU0VDUkVULUNBTkFSWS1zbXRwL1B3Kzc9eCZ5",
        "the SMTP AUTH PLAIN argument",
    );
    assert_found(
        "C: AUTH PLAIN AHBheWJyaWRnZS1tYWlsZXIAU0VDUkVULUNBTkFSWS1zbXRwL1B3Kzc9eCZ5",
        "the SMTP password, base64",
    );
    assert_found(
        "334 UGFzc3dvcmQ6 U0VDUkVULUNBTkFSWS1zbXRwL1B3Kzc9eCZ5",
        "the SMTP password, base64",
    );
    assert_found(
        "{\"authorization\": \"Basic cy1wcml2LTJhMTBTRUNSRVQtQ0FOQVJZLWNhcmQtZXhwZXJ0LVpxOXhXNDo=\"}",
        "the Unzer Basic auth header value of CardExpert",
    );
    assert_found(
        "url=http://u:SECRET-CANARY-pixi%2FPw%2B9%3Dq%26z@127.0.0.1/",
        "the pixi password, percent-encoded",
    );
    assert_found(
        "password=SECRET-CANARY-smtp%2fPw%2b7%3dx%26y",
        "the SMTP password, percent-encoded (lowercase hex)",
    );
    assert_found(
        "<Password>SECRET-CANARY-pixi/Pw+9=q&amp;z</Password>",
        "the pixi password, XML-escaped",
    );
    assert_found(
        &format!("bytes: {}", hex(SMTP_PASSWORD, false)),
        "the SMTP password, hex",
    );
    assert_found("key s-priv-2a10secret-canary… (cut off)", "the marker");
    assert_found(&base64(b"..SECRET-CANARY-", B64_URL), "the marker, base64");
    for (name, secret) in secrets() {
        assert_found(&format!("x {secret} y"), &format!("{name}, as is"));
        // Inside a larger base64 blob, at all three alignments.
        for prefix in ["", "a", "ab", "abc"] {
            let blob = base64(format!("{prefix}user:{secret}:tail").as_bytes(), B64_STD);
            assert_found(&blob, &format!("{name}, base64"));
        }
    }
    let clean = "2026-01-01T00:00:00Z DEBUG paybridge_core::erp::pixi: pixi call \
                 call=\"pixiGetOrderHeader\" params=3 authorization: Basic \
                 cGl4aUFQUDpwaXhpLXNpbS1wYXNzd29yZA== key s-priv-demo-card-std-not-a-real-key \
                 public s-pub-demo-card-exp, order 10003, payment s-pay-17";
    assert_eq!(forms(clean), Vec::<String>::new());
}
