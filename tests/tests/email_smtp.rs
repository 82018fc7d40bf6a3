//! paybridge-core's e-mail notifier against a real SMTP server: `python3 -m aiosmtpd` with the
//! `Mailbox` handler writing every received mail into a maildir, which the tests then read
//! ([`paybridge_testkit::smtp_sink`]; here and not under `shared/tests/` because paybridge-core
//! does not depend on the testkit). Operator problem mails and the test mail, and the payment-link
//! mail to a customer (`email_payment_link_*`: `multipart/alternative`, decoded part by part
//! here with Python's `email` package, as the sink's reader takes single-part mails only).
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`) and, for the STARTTLS tests, the
//! `openssl` CLI. A missing `aiosmtpd` fails the tests (it never skips them silently). Every test
//! starts its own server on its own free port in its own temporary directory; a guard kills the
//! server when the test ends, also when it fails.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use paybridge_core::config::{Secret, SecretRef, Smtp};
use paybridge_core::money::{Currency, Money};
use paybridge_core::notify::email::EmailNotifier;
use paybridge_core::notify::{Notifier, PaymentLinkMail, Problem};
use paybridge_testkit::smtp_sink::{Mail, SinkOptions, SmtpSink};

const SMTP_PASSWORD: &str = "smtp-Pa55word-4-test";
const SMTP_USER: &str = "paybridge-mailer";
const UNZER_PRIVATE_KEY: &str = "s-priv-2a10TestOnlyKey9Zq";
const FROM: &str = "paybridge@example.com";
const TO: &str = "ops@merchant.example";

/// `[smtp]` settings pointing at `sink`: STARTTLS or not, with `SMTP_USER`/`SMTP_PASSWORD` or
/// without credentials.
fn smtp_settings(sink: &SmtpSink, starttls: bool, credentials: bool) -> Smtp {
    Smtp {
        host: "127.0.0.1".into(),
        port: sink.port(),
        user: credentials.then(|| SMTP_USER.to_string()),
        password: credentials.then(|| SecretRef::Plain(Secret::new(SMTP_PASSWORD))),
        from: FROM.into(),
        to: TO.into(),
        starttls,
    }
}

/// STARTTLS required, and AUTH PLAIN with `SMTP_USER`/`SMTP_PASSWORD` required.
fn tls_auth_sink() -> SmtpSink {
    SmtpSink::start(SinkOptions::starttls_with_auth(SMTP_USER, SMTP_PASSWORD))
}

fn problem(message: &str) -> Problem {
    Problem {
        tenant: "acme".into(),
        order_id: "1001".into(),
        code: "psp.capture_failed".into(),
        message: message.into(),
        action: "Prüfen Sie die Zahlung im Unzer-Portal und buchen Sie sie in pixi nach.".into(),
    }
}

fn assert_problem_mail(m: &Mail) {
    assert_eq!(m.to, TO);
    assert_eq!(m.envelope_to, TO, "envelope recipient");
    assert_eq!(m.from, FROM);
    assert_eq!(m.envelope_from, FROM, "envelope sender");
    assert!(
        m.subject.starts_with("[paybridge] order 1001 (acme): "),
        "{}",
        m.subject
    );
    assert!(m.subject.contains("1001"), "{}", m.subject);
    assert_eq!(
        (m.content_type.as_str(), m.charset.as_str()),
        ("text/plain", "utf-8")
    );
    assert!(m.body.contains("Order:        1001"), "{}", m.body);
    assert!(
        m.body.contains("Problem code: psp.capture_failed"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("Capture of 12,34 € failed: Unzer answered 401"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("Prüfen Sie die Zahlung im Unzer-Portal und buchen Sie sie in pixi nach."),
        "{}",
        m.body
    );
}

/// Plain SMTP: one mail per problem, recipient in header and envelope, UTF-8 body, the Unzer
/// private key in the problem text removed. `starttls = true` against a server without STARTTLS
/// must fail instead of falling back to plain text.
#[tokio::test]
async fn problem_mail_over_plain_smtp() {
    let sink = SmtpSink::start(SinkOptions::default());
    let notifier = EmailNotifier::new(&smtp_settings(&sink, false, false), "acme").unwrap();

    let message =
        format!("Capture of 12,34 € failed: Unzer answered 401 for key {UNZER_PRIVATE_KEY}");
    notifier
        .notify(&problem(&message))
        .await
        .expect("send problem mail");

    let mails = sink.mails();
    assert_eq!(
        mails.len(),
        1,
        "exactly one mail per problem; server log:\n{}",
        sink.log()
    );
    let m = &mails[0];
    assert_problem_mail(m);
    assert!(
        m.body.contains("[redacted Unzer private key]"),
        "{}",
        m.body
    );
    m.assert_absent(UNZER_PRIVATE_KEY, "the Unzer private key");
    m.assert_absent("s-priv-", "an Unzer private key prefix");

    let strict = EmailNotifier::new(&smtp_settings(&sink, true, false), "acme").unwrap();
    let err = strict
        .notify(&problem("x"))
        .await
        .expect_err("STARTTLS is required");
    assert!(
        err.0.contains(&format!("127.0.0.1:{}", sink.port())),
        "{err}"
    );
    assert_eq!(sink.raw_mails().len(), 1, "no mail without STARTTLS");
}

/// STARTTLS required (self-signed certificate with SAN) and AUTH PLAIN: the mail arrives, and
/// neither the SMTP password nor an Unzer private key put into the problem is in it.
#[tokio::test]
async fn problem_mail_over_starttls_with_auth_leaks_no_secrets() {
    let sink = tls_auth_sink();
    let settings = smtp_settings(&sink, true, true);
    let notifier =
        EmailNotifier::with_tls_roots(&settings, "acme", sink.cert_pem().unwrap()).unwrap();

    let message = format!(
        "Capture of 12,34 € failed: Unzer answered 401 (key {UNZER_PRIVATE_KEY}, \
         smtp password {SMTP_PASSWORD}, card 4111 1111 1111 1111)"
    );
    notifier
        .notify(&problem(&message))
        .await
        .unwrap_or_else(|e| {
            panic!("send over STARTTLS: {e}\nserver log:\n{}", sink.log());
        });

    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "exactly one mail per problem");
    let m = &mails[0];
    assert_problem_mail(m);
    m.assert_absent(SMTP_PASSWORD, "the SMTP password");
    m.assert_absent(UNZER_PRIVATE_KEY, "the Unzer private key");
    m.assert_absent("4111 1111 1111 1111", "the card number");
    for marker in [
        "[redacted secret]",
        "[redacted Unzer private key]",
        "[redacted card number]",
    ] {
        assert!(m.body.contains(marker), "{marker} missing:\n{}", m.body);
    }

    // Without trusting the test certificate, the self-signed server is refused: certificates are
    // verified by default, and nothing is sent.
    let default_trust = EmailNotifier::new(&settings, "acme").unwrap();
    let err = default_trust
        .notify(&problem("x"))
        .await
        .expect_err("self-signed cert refused");
    assert!(!err.0.contains(SMTP_PASSWORD), "{err}");

    // Plain SMTP against a server that requires STARTTLS is refused by the server.
    let plain = EmailNotifier::new(&smtp_settings(&sink, false, false), "acme").unwrap();
    let err = plain
        .notify(&problem("x"))
        .await
        .expect_err("server requires STARTTLS");
    assert!(err.0.contains("STARTTLS"), "{err}");
    assert_eq!(sink.raw_mails().len(), 1);
}

/// A wrong password is reported as an error that does not contain the password.
#[tokio::test]
async fn wrong_password_is_an_error_without_the_password() {
    let sink = tls_auth_sink();
    let mut settings = smtp_settings(&sink, true, true);
    settings.password = Some(SecretRef::Plain(Secret::new("wrong-Pa55word-4-test")));
    let notifier =
        EmailNotifier::with_tls_roots(&settings, "acme", sink.cert_pem().unwrap()).unwrap();
    let err = notifier
        .notify(&problem("x"))
        .await
        .expect_err("wrong password");
    assert!(err.0.contains("535"), "{err}");
    assert!(!err.0.contains("wrong-Pa55word-4-test"), "{err}");
    assert!(sink.raw_mails().is_empty());
}

/// `send_test` (for `paybridge mail-test`) arrives over STARTTLS with credentials.
#[tokio::test]
async fn send_test_arrives() {
    let sink = tls_auth_sink();
    let notifier = EmailNotifier::with_tls_roots(
        &smtp_settings(&sink, true, true),
        "acme",
        sink.cert_pem().unwrap(),
    )
    .unwrap();
    notifier.send_test().await.unwrap_or_else(|e| {
        panic!("send test mail: {e}\nserver log:\n{}", sink.log());
    });

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!((m.to.as_str(), m.envelope_to.as_str()), (TO, TO));
    assert!(
        m.subject.contains("test mail") && m.subject.contains("acme"),
        "{}",
        m.subject
    );
    assert!(
        m.body
            .contains("paybridge test mail: your SMTP settings work"),
        "{}",
        m.body
    );
    m.assert_absent(SMTP_PASSWORD, "the SMTP password");
}

/// A server that accepts the connection and then never answers cannot hang a notification: the
/// send timeout ends it with an error.
#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept().map(|(c, _)| c);
        let _ = stop_rx.recv();
        drop(conn);
    });

    let settings = Smtp {
        host: "127.0.0.1".into(),
        port,
        user: None,
        password: None,
        from: FROM.into(),
        to: TO.into(),
        starttls: false,
    };
    let notifier = EmailNotifier::new(&settings, "acme")
        .unwrap()
        .with_send_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = notifier.notify(&problem("x")).await.expect_err("timeout");
    assert!(err.0.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    stop_tx.send(()).unwrap();
    holder.join().unwrap();
}

const CUSTOMER: &str = "kunde.1001@customer.example";
/// A Paygate-style hosted-form link: `&` must arrive verbatim in the text part and escaped in
/// the HTML part.
const LINK: &str = "https://www.computop-paygate.com/payssl.aspx?MerchantID=acme&Len=32\
                    &Data=0123456789ABCDEF0123456789ABCDEF&Language=en";

fn link_mail(resent: bool) -> PaymentLinkMail {
    PaymentLinkMail {
        to: CUSTOMER.into(),
        shop: "Müller & Söhne".into(),
        order_id: "1001".into(),
        shop_order_no: "S-2024-1001".into(),
        amount: Money::parse("123.45", Currency::EUR).expect("amount"),
        url: LINK.into(),
        resent,
    }
}

/// A received mail with its leaf parts, decoded by Python's `email` package.
#[derive(Debug, serde::Deserialize)]
struct Decoded {
    from: String,
    to: String,
    cc: String,
    bcc: String,
    envelope_to: String,
    subject: String,
    content_type: String,
    parts: Vec<DecodedPart>,
}

#[derive(Debug, serde::Deserialize)]
struct DecodedPart {
    content_type: String,
    charset: String,
    body: String,
}

const DECODE_MIME_PY: &str = r#"
import email, email.policy, json, sys
m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
parts = [
    {"content_type": p.get_content_type(), "charset": str(p.get_content_charset()),
     "body": p.get_content()}
    for p in m.walk() if not p.is_multipart()
]
json.dump({
    "from": str(m["From"]), "to": str(m["To"]), "cc": str(m["Cc"]), "bcc": str(m["Bcc"]),
    "envelope_to": str(m["X-RcptTo"]), "subject": str(m["Subject"]),
    "content_type": m.get_content_type(), "parts": parts,
}, sys.stdout)
"#;

/// Decodes one raw mail (headers, RFC 2047 subject, every leaf part's transfer encoding).
fn decode(raw: &str) -> Decoded {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", DECODE_MIME_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 to decode the mail");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(raw.as_bytes())
        .expect("write the mail");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "decoding the mail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mail JSON")
}

/// The one received mail, raw and decoded, with both parts checked: text first, HTML last.
fn one_link_mail(sink: &SmtpSink) -> (String, Decoded) {
    let raw = sink.raw_mails();
    assert_eq!(raw.len(), 1, "one mail; server log:\n{}", sink.log());
    let d = decode(&raw[0]);
    assert_eq!(d.content_type, "multipart/alternative", "{}", raw[0]);
    let kinds: Vec<(&str, &str)> = d
        .parts
        .iter()
        .map(|p| (p.content_type.as_str(), p.charset.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("text/plain", "utf-8"), ("text/html", "utf-8")],
        "{}",
        raw[0]
    );
    (raw.into_iter().next().unwrap_or_default(), d)
}

/// Log lines written while a test runs (this thread's default subscriber, info and above).
#[derive(Clone, Default)]
struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Plain SMTP: the payment link arrives at the customer's address only (header and envelope;
/// the operators' address is not a recipient), from the configured sender, as
/// `multipart/alternative` with a plain-text and an HTML part that both name the shop, the
/// order and shop order numbers and the amount with its currency; the link is in the text
/// verbatim and in the HTML escaped (button and text). The info log names the order, never the
/// link or the address.
#[tokio::test]
async fn email_payment_link_arrives_at_the_customer_with_both_parts() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);

    let sink = SmtpSink::start(SinkOptions::default());
    let notifier = EmailNotifier::new(&smtp_settings(&sink, false, false), "acme").unwrap();
    notifier
        .payment_link(&link_mail(false))
        .await
        .unwrap_or_else(|e| panic!("send the payment link: {e}\nserver log:\n{}", sink.log()));

    let (raw, m) = one_link_mail(&sink);
    assert_eq!(m.to, CUSTOMER);
    assert_eq!(
        m.envelope_to, CUSTOMER,
        "envelope recipient: the customer only"
    );
    assert_eq!((m.cc.as_str(), m.bcc.as_str()), ("None", "None"));
    assert!(
        !raw.contains(TO),
        "the operators' address is not a recipient"
    );
    assert_eq!(m.from, FROM);
    assert_eq!(m.subject, "Payment for your order 1001 at Müller & Söhne");

    let text = &m.parts[0].body;
    for want in [
        "Müller & Söhne",
        "Order number:      1001\n",
        "Shop order number: S-2024-1001\n",
        "Amount:            123.45 EUR\n",
        "can be used once",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    assert!(
        text.contains(&format!("\n{LINK}\n")),
        "link verbatim:\n{text}"
    );

    let html = &m.parts[1].body;
    let escaped = LINK.replace('&', "&amp;");
    assert!(!html.contains(LINK), "a raw & in the HTML:\n{html}");
    assert_eq!(
        html.matches(&format!("href=\"{escaped}\"")).count(),
        2,
        "button and text link:\n{html}"
    );
    for want in [
        "Müller &amp; Söhne",
        "<strong>1001</strong>",
        "S-2024-1001",
        "<strong>123.45 EUR</strong>",
        ">Pay 123.45 EUR now</a>",
        &format!(">{escaped}</a>"),
        "can be used once",
    ] {
        assert!(html.contains(want), "{want:?} missing:\n{html}");
    }

    let log = logs.text();
    assert!(log.contains("payment link e-mail sent"), "{log}");
    assert!(log.contains("1001"), "{log}");
    for secret in ["payssl.aspx", "0123456789ABCDEF", CUSTOMER] {
        assert!(!log.contains(secret), "{secret:?} in the info log:\n{log}");
    }
}

/// STARTTLS with AUTH: a resent link arrives with the reminder wording, and neither the SMTP
/// password nor the operators' address is in it.
#[tokio::test]
async fn email_payment_link_reminder_over_starttls_with_auth() {
    let sink = tls_auth_sink();
    let notifier = EmailNotifier::with_tls_roots(
        &smtp_settings(&sink, true, true),
        "acme",
        sink.cert_pem().unwrap(),
    )
    .unwrap();
    notifier
        .payment_link(&link_mail(true))
        .await
        .unwrap_or_else(|e| panic!("send over STARTTLS: {e}\nserver log:\n{}", sink.log()));

    let (raw, m) = one_link_mail(&sink);
    assert_eq!(
        (m.to.as_str(), m.envelope_to.as_str()),
        (CUSTOMER, CUSTOMER)
    );
    assert_eq!(
        m.subject,
        "Reminder: payment for your order 1001 at Müller & Söhne"
    );
    assert!(m.parts[0].body.contains("reminder"), "{}", m.parts[0].body);
    assert!(m.parts[0].body.contains("123.45 EUR"));
    assert!(m.parts[1].body.contains("123.45 EUR"));
    assert!(!raw.contains(SMTP_PASSWORD), "the SMTP password leaked");
    assert!(!raw.contains(TO));
}

/// A recipient that would smuggle in a header or a second recipient is refused before anything
/// is sent; the error does not repeat the address.
#[tokio::test]
async fn email_payment_link_refuses_a_smuggled_recipient_and_sends_nothing() {
    let sink = SmtpSink::start(SinkOptions::default());
    let notifier = EmailNotifier::new(&smtp_settings(&sink, false, false), "acme").unwrap();
    for to in [
        "kunde@customer.example\r\nBcc: victim@elsewhere.example",
        "kunde@customer.example\nBcc: victim@elsewhere.example",
        "kunde@customer.example, victim@elsewhere.example",
        "Kunde <kunde@customer.example>",
        "not-an-address",
    ] {
        let mut mail = link_mail(false);
        mail.to = to.into();
        let e = notifier.payment_link(&mail).await.expect_err("refused");
        assert!(e.0.contains("e-mail address is refused"), "{to:?}: {e}");
        assert!(!e.0.contains("victim"), "{e}");
    }
    assert!(sink.raw_mails().is_empty(), "nothing was sent");
    // The same notifier still sends to a plain address.
    notifier
        .payment_link(&link_mail(false))
        .await
        .expect("a plain address is sent to");
    assert_eq!(sink.raw_mails().len(), 1);
}
