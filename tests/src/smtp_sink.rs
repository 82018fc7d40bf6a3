//! A real SMTP server for tests: `python3 -m aiosmtpd` with the stock `Mailbox` handler writing
//! every received mail into a maildir, which the test then reads back ([`SmtpSink::mails`]).
//!
//! Optionally the server offers and requires STARTTLS with a fresh self-signed certificate, and
//! requires `AUTH PLAIN` with given credentials, refusing mail from clients that did not
//! authenticate (so an arriving mail proves the credentials were sent and were right).
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`; `.ci/run` installs it) and, for
//! STARTTLS, the `openssl` CLI. A missing `aiosmtpd` fails the test with the fix in the message:
//! it never skips silently. Every sink runs on its own free port in its own temporary directory;
//! dropping it kills the server, also when the test panics.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stock `Mailbox` handler plus an `AUTH PLAIN` check against `SINK_USER`/`SINK_PASSWORD`;
/// mail is refused unless the client authenticated.
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
        # A multipart mail (a payment link: plain text and HTML) shows its plain-text part.
        "body": (m.get_body(preferencelist=("plain", "html")) or m).get_content(),
    })
json.dump(out, sys.stdout)
"#;

/// Fails (never skips) when `python3 -m aiosmtpd` is not available, with the fix in the message.
/// [`SmtpSink::start`] calls it first.
pub fn require_aiosmtpd() {
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
        "this test needs a real SMTP server: `python3 -m aiosmtpd` is not available. \
         Install it with `pip install aiosmtpd` (the SMTP tests fail instead of skipping)"
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
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run the openssl CLI (needed for a STARTTLS sink)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsFiles { cert, key }
}

/// The user name and password an authenticating sink accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// How the sink behaves; the default is plain SMTP without authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkOptions {
    /// Offer STARTTLS with a fresh self-signed certificate ([`SmtpSink::cert_pem`]), and
    /// require it.
    pub tls: bool,
    /// Require `AUTH PLAIN` with these credentials and refuse mail from unauthenticated clients.
    /// aiosmtpd offers AUTH only after STARTTLS, so this needs `tls`.
    pub auth: Option<Credentials>,
}

impl SinkOptions {
    /// STARTTLS required, and `AUTH PLAIN` with `user`/`password` required.
    pub fn starttls_with_auth(user: &str, password: &str) -> SinkOptions {
        SinkOptions {
            tls: true,
            auth: Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }),
        }
    }
}

/// The aiosmtpd process; killed and reaped on drop.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running aiosmtpd on `127.0.0.1` writing into a maildir in its own temporary directory;
/// killed on drop.
pub struct SmtpSink {
    // Declared first: dropped (killed) before the directory is removed.
    _server: ServerProcess,
    port: u16,
    maildir: PathBuf,
    cert_pem: Option<Vec<u8>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts the server and waits until it accepts connections; panics when it cannot (with
    /// the server's output in the message).
    pub fn start(opts: SinkOptions) -> SmtpSink {
        assert!(
            opts.tls || opts.auth.is_none(),
            "aiosmtpd offers AUTH only after STARTTLS: an authenticating sink needs `tls`"
        );
        require_aiosmtpd();
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create maildir");
        }
        let tls = opts.tls.then(|| self_signed_cert(dir.path()));
        let handler = if opts.auth.is_some() {
            std::fs::write(dir.path().join("paybridge_sink.py"), AUTH_HANDLER_PY)
                .expect("write the handler");
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
            cmd.env("PYTHONPATH", dir.path());
            if let Some(c) = &opts.auth {
                cmd.env("SINK_USER", &c.user)
                    .env("SINK_PASSWORD", &c.password);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the server log"));
            let mut server = ServerProcess(cmd.spawn().expect("spawn python3 -m aiosmtpd"));
            match wait_until_listening(&mut server.0, port) {
                Ok(()) => {
                    let cert_pem = tls
                        .as_ref()
                        .map(|t| std::fs::read(&t.cert).expect("read the certificate"));
                    return SmtpSink {
                        _server: server,
                        port,
                        maildir,
                        cert_pem,
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

    /// The port the server listens on (at `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's self-signed certificate (PEM) to trust, for a STARTTLS sink.
    pub fn cert_pem(&self) -> Option<&[u8]> {
        self.cert_pem.as_deref()
    }

    /// The raw files of all mails received so far, in file-name order.
    pub fn raw_mails(&self) -> Vec<String> {
        let mut paths: Vec<_> = std::fs::read_dir(self.maildir.join("new"))
            .expect("read maildir")
            .map(|e| e.expect("read maildir entry").path())
            .collect();
        paths.sort();
        paths.iter().map(|p| read_lossy(p)).collect()
    }

    /// All mails received so far, decoded, in file-name order.
    pub fn mails(&self) -> Vec<Mail> {
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
            m.raw = read_lossy(&m.path);
        }
        mails
    }

    /// What the server wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).expect("read a mail file")).into_owned()
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

/// One received mail: headers and body decoded, plus the raw file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    /// The file in the maildir.
    pub path: PathBuf,
    pub from: String,
    pub to: String,
    /// Decoded (RFC 2047).
    pub subject: String,
    /// The envelope sender (`MAIL FROM`), from aiosmtpd's `X-MailFrom` header.
    pub envelope_from: String,
    /// The envelope recipients (`RCPT TO`), from aiosmtpd's `X-RcptTo` header.
    pub envelope_to: String,
    /// E.g. `text/plain`.
    pub content_type: String,
    /// `None` when the mail names none.
    pub charset: String,
    /// Decoded (quoted-printable, base64, charset).
    pub body: String,
    /// The whole file as received (non-UTF-8 bytes replaced).
    #[serde(skip)]
    pub raw: String,
}

impl Mail {
    /// Asserts that `needle` appears nowhere: raw file, decoded subject and body. `what` names
    /// it in the failure message.
    pub fn assert_absent(&self, needle: &str, what: &str) {
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
