//! paybridge-core's e-mail notifier against a real SMTP server: `python3 -m aiosmtpd` with the
//! `Mailbox` handler writing every received mail into a maildir, which the tests then read
//! ([`paybridge_testkit::smtp_sink`]; here and not under `shared/tests/` because paybridge-core
//! does not depend on the testkit).
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`) and, for the STARTTLS tests, the
//! `openssl` CLI. A missing `aiosmtpd` fails the tests (it never skips them silently). Every test
//! starts its own server on its own free port in its own temporary directory; a guard kills the
//! server when the test ends, also when it fails.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use paybridge_core::config::{Secret, SecretRef, Smtp};
use paybridge_core::notify::email::EmailNotifier;
use paybridge_core::notify::{Notifier, Problem};
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
