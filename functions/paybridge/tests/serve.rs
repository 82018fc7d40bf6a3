//! Process-level tests of the `paybridge` binary: it is started the way an operator starts it
//! (on a copy of `paybridge.example.toml` with a temporary database and a free port) and judged
//! by its exit code, its stderr and its HTTP answers. The router itself is tested without a
//! socket in `src/http.rs`.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_paybridge");
const DEMO_SECRET: &str = "s-priv-2a10DEMO-not-a-real-key";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_config() -> String {
    std::fs::read_to_string(repo_root().join("paybridge.example.toml"))
        .expect("paybridge.example.toml is readable")
}

/// `text` with `from` replaced once; fails loudly when the example no longer contains `from`.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the example config no longer contains {from:?}"
    );
    text.replacen(from, to, 1)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The example config for a test run: listening on `port`, fixtures from the repository, the
/// database next to the config (in a temp dir), no quiet hours (the test must not depend on
/// the time of day).
fn test_config(port: u16) -> String {
    let fixtures = repo_root().join("examples/orders.json");
    let text = example_config();
    let text = replace(
        &text,
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let text = replace(
        &text,
        "fixtures = \"examples/orders.json\"",
        &format!("fixtures = '{}'", fixtures.display()),
    );
    let text = replace(
        &text,
        "quiet_hours = \"00:00-04:00\"",
        "quiet_hours = \"off\"",
    );
    replace(
        &text,
        "database = \"./paybridge.db\"",
        "database = \"./test.db\"",
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("paybridge.toml");
    std::fs::write(&p, text).expect("write the test config");
    p
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `paybridge serve`; killed when dropped so a failing test leaves no process behind.
struct Server {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Server {
    fn start(config: &Path, extra: &[&str], port: u16) -> Server {
        let log = config.with_file_name("serve.log");
        let file = std::fs::File::create(&log).expect("create the log file");
        let mut args = vec!["--log-json", "serve", "--config"];
        let config = config.to_str().expect("utf-8 temp path");
        args.push(config);
        args.extend_from_slice(extra);
        let child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn paybridge serve");
        Server { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines' `fields` objects.
    fn log_fields(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["fields"].clone())
            .collect()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until `GET path` answers 200 and returns its JSON.
    fn wait_for_ok(&mut self, path: &str, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                panic!("paybridge exited early ({status}); log:\n{}", self.log());
            }
            if let Some((200, body)) = http_get(self.port, path) {
                return serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
            }
            assert!(
                Instant::now() < until,
                "GET {path} did not answer 200 within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `check` until it holds.
    fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Server) -> bool,
    ) {
        let until = Instant::now() + timeout;
        while !check(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status (graceful shutdown).
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.exited() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < until,
                "no exit within 15 s of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET; `None` while nothing listens or the answer is incomplete.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

// ------------------------------------------------------------------------------------ tests ---

#[test]
fn serve_example_answers_health_releases_orders_and_lists_the_mismatch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = write_config(dir.path(), &test_config(port));
    let mut server = Server::start(&config, &[], port);

    let health = server.wait_for_ok("/health", Duration::from_secs(20));
    assert_eq!(
        health,
        serde_json::json!({ "status": "ok", "tenant": "demo-shop" })
    );
    assert!(
        dir.path().join("test.db").exists(),
        "the database is resolved next to the config"
    );

    // The deliberately mismatched order (PSP authorized 25.00 of 250.00) is the only problem.
    let mut problems = Value::Null;
    server.wait_until("order 10004 in /problems", Duration::from_secs(20), |s| {
        problems = s.wait_for_ok("/problems", Duration::from_secs(5));
        problems.as_array().is_some_and(|l| !l.is_empty())
    });
    let list = problems.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{problems}");
    assert_eq!(list[0]["order_id"], "10004");
    assert_eq!(list[0]["connection"], "demo");
    assert_eq!(list[0]["codes"], serde_json::json!(["authorization_check"]));
    let text = problems.to_string();
    assert!(
        !text.contains("250.00") && !text.contains("25.00"),
        "no amounts in /problems: {text}"
    );

    // The other orders are released (visible in the log), the standard-mode one after its capture.
    server.wait_until("the releases in the log", Duration::from_secs(20), |s| {
        let released: Vec<String> = s
            .log_fields()
            .iter()
            .filter(|f| {
                f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("order released"))
            })
            .filter_map(|f| f["order"].as_str().map(str::to_string))
            .collect();
        ["10001", "10002", "10003", "10005"]
            .iter()
            .all(|o| released.iter().any(|r| r == o))
    });
    assert!(
        server.log_fields().iter().any(|f| f["message"]
            .as_str()
            .is_some_and(|m| m.contains("capture 120.00 EUR done"))),
        "standard mode captured before the release"
    );

    let (status, log) = server.terminate();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status}; log:\n{log}"
    );
    assert!(log.contains("paybridge stopped"), "{log}");
    assert!(!log.contains(DEMO_SECRET), "a secret reached the log");
}

#[test]
fn config_check_accepts_the_example() {
    let example = repo_root().join("paybridge.example.toml");
    let out = run(&[
        "config",
        "check",
        "--config",
        example.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert!(!stderr(&out).contains(DEMO_SECRET));
}

#[test]
fn bad_config_exits_2_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = replace(
        &test_config(free_port()),
        "mode = \"expert\"",
        "mode = \"turbo\"",
    );
    let line = text
        .lines()
        .position(|l| l.contains("turbo"))
        .expect("turbo line")
        + 1;
    let config = write_config(dir.path(), &text);
    let location = format!("{}:{line}:", config.display());

    for args in [
        vec!["serve", "--config", config.to_str().expect("utf-8 path")],
        vec![
            "config",
            "check",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&location), "{args:?}: no {location} in {err}");
        assert!(
            err.contains("mode"),
            "{args:?}: the field is not named: {err}"
        );
        assert!(err.contains("turbo"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    assert!(
        !dir.path().join("test.db").exists(),
        "nothing is created for a bad config"
    );
}

#[test]
fn unresolvable_secret_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = replace(
        &test_config(free_port()),
        &format!("private_key = \"plain:{DEMO_SECRET}\""),
        "private_key = \"env:PAYBRIDGE_TEST_UNSET_SECRET_VARIABLE\"",
    );
    let config = write_config(dir.path(), &text);
    let out = run(&["serve", "--config", config.to_str().expect("utf-8 path")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("method[0].private_key"), "{err}");
    assert!(
        err.contains("PAYBRIDGE_TEST_UNSET_SECRET_VARIABLE"),
        "{err}"
    );
    assert!(!err.contains(DEMO_SECRET), "{err}");
}

#[test]
fn unusable_arguments_exit_2() {
    for args in [
        vec!["serve"],
        vec!["serve", "--config", "x.toml", "--bogus"],
        vec!["frobnicate"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = run(&["serve", "--config", "/nonexistent/paybridge.toml"]);
    assert_eq!(out.status.code(), Some(2));
    // A file-level error: the file, no made-up position.
    assert!(
        stderr(&out).contains("/nonexistent/paybridge.toml: (file): cannot read the file:"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(":0:0"), "{}", stderr(&out));
}

/// A pixi connection whose endpoint does not answer stops the start with exit code 3, naming
/// the connection and the URL, never the password.
#[test]
fn unreachable_pixi_exits_3_naming_connection_and_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dead_port = free_port();
    let text = replace(
        &test_config(free_port()),
        "kind = \"memory\"",
        &format!(
            "kind = \"pixi\"\nurl = \"http://127.0.0.1:{dead_port}/soap\"\nuser = \"api\"\npassword = \"plain:pixi-demo\""
        ),
    );
    let config = write_config(dir.path(), &text);
    let out = run(&["serve", "--config", config.to_str().expect("utf-8 path")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{dead_port}")), "{err}");
    assert!(!err.contains("pixi-demo"), "{err}");
}

/// The reachability check on a memory connection with a `url`: unreachable is exit code 3 naming the connection and the URL;
/// `--no-check` starts anyway.
#[test]
fn unreachable_url_exits_3_unless_no_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dead_port = free_port();
    let url = format!("http://127.0.0.1:{dead_port}/soap");
    let port = free_port();
    let text = replace(
        &test_config(port),
        "kind = \"memory\"",
        &format!("kind = \"memory\"\nurl = \"{url}\""),
    );
    let config = write_config(dir.path(), &text);

    let out = run(&["serve", "--config", config.to_str().expect("utf-8 path")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("\"demo\""),
        "the connection id is named: {err}"
    );
    assert!(err.contains(&url), "the URL is named: {err}");

    let mut server = Server::start(&config, &["--no-check"], port);
    let health = server.wait_for_ok("/health", Duration::from_secs(20));
    assert_eq!(health["status"], "ok");
    let (status, log) = server.terminate();
    assert!(status.success(), "{status}; log:\n{log}");
}
