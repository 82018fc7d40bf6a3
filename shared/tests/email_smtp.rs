//! The e-mail notifier against a real SMTP server: `python3 -m aiosmtpd` with the `Mailbox`
//! handler writing every received mail into a maildir, which the tests then read.
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`) and, for the STARTTLS tests, the
//! `openssl` CLI. A missing `aiosmtpd` fails the tests (it never skips them silently). Every test
//! starts its own server on its own free port in its own temporary directory; a guard kills the
//! server when the test ends, also when it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paybridge_core::config::{Secret, SecretRef, Smtp};
use paybridge_core::notify::email::EmailNotifier;
use paybridge_core::notify::{Notifier, Problem};

const SMTP_PASSWORD: &str = "smtp-Pa55word-4-test";
const SMTP_USER: &str = "paybridge-mailer";
const UNZER_PRIVATE_KEY: &str = "s-priv-2a10TestOnlyKey9Zq";
const FROM: &str = "paybridge@example.com";
const TO: &str = "ops@merchant.example";

/// Python handler used for the authenticated STARTTLS tests: the stock `Mailbox` handler plus an
/// `AUTH PLAIN` check against `SINK_USER`/`SINK_PASSWORD`, and mail is refused unless the client
/// authenticated (so an arriving mail proves the credentials were sent and were right).
const AUTH_HANDLER_PY: &str = r#"
import base64
import os

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


class AuthMailbox(Mailbox):
    def __init__(self, mail_dir, message_class=None):
        super().__init__(mail_dir, message_class)
        self.user = os.environ["SINK_USER"].encode()
        self.password = os.environ["SINK_PASSWORD"].encode()

    async def auth_PLAIN(self, server, args):
        # handled=False: aiosmtpd answers 235 or 535 itself.
        if len(args) != 2:
            return AuthResult(success=False, handled=False)
        try:
            _, user, password = base64.b64decode(args[1]).split(b"\0")
        except Exception:
            return AuthResult(success=False, handled=False)
        ok = user == self.user and password == self.password
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"
"#;

/// Decodes every mail of a maildir with Python's `email` package (RFC 2047 subjects,
/// quoted-printable/base64 bodies) and prints them as JSON.
const READ_MAILDIR_PY: &str = r#"
import email, email.policy, json, os, sys
new = os.path.join(sys.argv[1], "new")
out = []
for name in sorted(os.listdir(new)):
    path = os.path.join(new, name)
    with open(path, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    out.append({
        "path": path,
        "from": str(m["From"]),
        "to": str(m["To"]),
        "subject": str(m["Subject"]),
        "envelope_from": str(m["X-MailFrom"]),
        "envelope_to": str(m["X-RcptTo"]),
        "content_type": m.get_content_type(),
        "charset": str(m.get_content_charset()),
        "body": m.get_content(),
    })
json.dump(out, sys.stdout)
"#;

/// Fails (never skips) when aiosmtpd is missing, with the fix in the message.
fn require_aiosmtpd() {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the Python package `aiosmtpd` is not importable by `python3`: \
             .ci/run must run `pip install aiosmtpd` before the Rust tests"
        );
    }
    panic!(
        "the e-mail tests need a real SMTP server: `python3 -m aiosmtpd` is not available. \
         Install it with `pip install aiosmtpd` (these tests fail instead of skipping)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate for `localhost`/`127.0.0.1` (with SAN; a CN-only certificate is
/// refused by rustls).
fn self_signed_cert(dir: &Path) -> TlsFiles {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run the openssl CLI (needed for the STARTTLS tests)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsFiles { cert, key }
}

#[derive(Default, Clone, Copy)]
struct SinkOptions {
    /// Offer STARTTLS with a fresh self-signed certificate, and require it.
    tls: bool,
    /// Require `AUTH PLAIN` with `SMTP_USER`/`SMTP_PASSWORD` (only offered after STARTTLS).
    auth: bool,
}

/// The aiosmtpd process; killed and reaped on drop.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running aiosmtpd writing into a maildir in its own temporary directory.
struct SmtpSink {
    // Declared first: dropped (killed) before the directory is removed.
    _server: ServerProcess,
    port: u16,
    maildir: PathBuf,
    cert_pem: Option<Vec<u8>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start(opts: SinkOptions) -> SmtpSink {
        require_aiosmtpd();
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create maildir");
        }
        let tls = opts.tls.then(|| self_signed_cert(dir.path()));
        let handler = if opts.auth {
            std::fs::write(dir.path().join("paybridge_sink.py"), AUTH_HANDLER_PY).unwrap();
            "paybridge_sink.AuthMailbox"
        } else {
            "aiosmtpd.handlers.Mailbox"
        };
        let log = dir.path().join("aiosmtpd.log");

        // A port free when picked can be taken before aiosmtpd binds it: retry with another.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
            if let Some(t) = &tls {
                cmd.arg("--tlscert")
                    .arg(&t.cert)
                    .arg("--tlskey")
                    .arg(&t.key);
            }
            cmd.args(["-c", handler]).arg(&maildir);
            cmd.env("PYTHONPATH", dir.path())
                .env("SINK_USER", SMTP_USER)
                .env("SINK_PASSWORD", SMTP_PASSWORD)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create server log"));
            let mut server = ServerProcess(cmd.spawn().expect("spawn python3 -m aiosmtpd"));
            match wait_until_listening(&mut server.0, port) {
                Ok(()) => {
                    return SmtpSink {
                        _server: server,
                        port,
                        maildir,
                        cert_pem: tls.as_ref().map(|t| std::fs::read(&t.cert).unwrap()),
                        log,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    drop(server);
                    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = format!("{e}\n{stderr}");
                }
            }
        }
        panic!("aiosmtpd did not start: {last_error}");
    }

    /// `[smtp]` settings pointing at this server.
    fn settings(&self, starttls: bool, credentials: bool) -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port: self.port,
            user: credentials.then(|| SMTP_USER.to_string()),
            password: credentials.then(|| SecretRef::Plain(Secret::new(SMTP_PASSWORD))),
            from: FROM.into(),
            to: TO.into(),
            starttls,
        }
    }

    /// The raw files of all mails received so far.
    fn raw_mails(&self) -> Vec<String> {
        let mut paths: Vec<_> = std::fs::read_dir(self.maildir.join("new"))
            .expect("read maildir")
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }

    /// All mails received so far, decoded.
    fn mails(&self) -> Vec<Mail> {
        let out = Command::new("python3")
            .args(["-c", READ_MAILDIR_PY])
            .arg(&self.maildir)
            .output()
            .expect("run python3 to decode the maildir");
        assert!(
            out.status.success(),
            "decoding the maildir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut mails: Vec<Mail> = serde_json::from_slice(&out.stdout).expect("maildir JSON");
        for m in &mut mails {
            m.raw = String::from_utf8_lossy(&std::fs::read(&m.path).unwrap()).into_owned();
        }
        mails
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls until the server accepts TCP connections; an early exit of the process is an error.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("aiosmtpd exited with {status} (port {port})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "aiosmtpd did not accept connections on port {port} within 15 s"
    ))
}

#[derive(Debug, serde::Deserialize)]
struct Mail {
    path: PathBuf,
    from: String,
    to: String,
    subject: String,
    envelope_from: String,
    envelope_to: String,
    content_type: String,
    charset: String,
    body: String,
    #[serde(skip)]
    raw: String,
}

impl Mail {
    /// Asserts that `needle` appears nowhere: raw file, decoded subject and body.
    fn assert_absent(&self, needle: &str, what: &str) {
        for (part, text) in [
            ("raw mail", &self.raw),
            ("subject", &self.subject),
            ("body", &self.body),
        ] {
            assert!(
                !text.contains(needle),
                "{what} leaked into the {part}:\n{text}"
            );
        }
    }
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
    let notifier = EmailNotifier::new(&sink.settings(false, false), "acme").unwrap();

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

    let strict = EmailNotifier::new(&sink.settings(true, false), "acme").unwrap();
    let err = strict
        .notify(&problem("x"))
        .await
        .expect_err("STARTTLS is required");
    assert!(err.0.contains(&format!("127.0.0.1:{}", sink.port)), "{err}");
    assert_eq!(sink.raw_mails().len(), 1, "no mail without STARTTLS");
}

/// STARTTLS required (self-signed certificate with SAN) and AUTH PLAIN: the mail arrives, and
/// neither the SMTP password nor an Unzer private key put into the problem is in it.
#[tokio::test]
async fn problem_mail_over_starttls_with_auth_leaks_no_secrets() {
    let sink = SmtpSink::start(SinkOptions {
        tls: true,
        auth: true,
    });
    let settings = sink.settings(true, true);
    let notifier =
        EmailNotifier::with_tls_roots(&settings, "acme", sink.cert_pem.as_deref().unwrap())
            .unwrap();

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
    let plain = EmailNotifier::new(&sink.settings(false, false), "acme").unwrap();
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
    let sink = SmtpSink::start(SinkOptions {
        tls: true,
        auth: true,
    });
    let mut settings = sink.settings(true, true);
    settings.password = Some(SecretRef::Plain(Secret::new("wrong-Pa55word-4-test")));
    let notifier =
        EmailNotifier::with_tls_roots(&settings, "acme", sink.cert_pem.as_deref().unwrap())
            .unwrap();
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
    let sink = SmtpSink::start(SinkOptions {
        tls: true,
        auth: true,
    });
    let notifier = EmailNotifier::with_tls_roots(
        &sink.settings(true, true),
        "acme",
        sink.cert_pem.as_deref().unwrap(),
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
