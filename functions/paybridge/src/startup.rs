//! Everything that happens before the process serves: load and validate the configuration,
//! resolve every secret, build the connectors with the one builder ([`wiring::connectors`]),
//! point any error at its line, and (for `serve`) check that the configured remote systems
//! answer.
//!
//! The order is deliberate: local, deterministic problems first (syntax, values, connector kinds
//! this build lacks, secrets, fixtures; exit code 2), then the network (exit code 3). An operator
//! never fixes a firewall only to learn the config could not have worked anyway.
//!
//! Relative paths in the configuration (`fixtures`, `server.database`, `file:` secrets) are
//! resolved against the configuration file's directory, so a config works from any working
//! directory.

use crate::connectors::{LoggedErp, LoggedPsp};
use paybridge_core::config::{
    self, Config, ConfigError, MethodConfig, PspKind, Secret, SecretRef, redact,
};
use paybridge_core::erp::Erp;
use paybridge_core::notify::Notifier;
use paybridge_core::psp::Psp;
use paybridge_core::wiring::{self, WiringError};
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// How long the start-up check waits for one TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the process did not start. Each variant has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work: located as `file:line:col: field: message`, followed by
    /// the offending source line when there is one.
    #[error("{error}{snippet}")]
    Config { error: ConfigError, snippet: String },
    #[error(
        "ERP connection {connection:?} is not reachable at {url}: {reason} (start with --no-check to skip this check)"
    )]
    Unreachable {
        connection: String,
        url: String,
        reason: String,
    },
    #[error("cannot open the database {path}: {reason}")]
    Database { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config { .. } => 2,
            StartError::Unreachable { .. } => 3,
            StartError::Database { .. } | StartError::Listen { .. } => 1,
        }
    }
}

/// A remote system to check at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub connection: String,
    /// The URL as configured, without any `user:password@` part.
    pub url: String,
    pub host: String,
    pub port: u16,
}

/// A validated configuration with its connectors, ready to become an `App`.
pub struct Prepared {
    pub config: Arc<Config>,
    /// The configuration file's directory: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub erps: HashMap<String, Arc<dyn Erp>>,
    pub psp: Arc<dyn Psp>,
    /// E-mail when `[smtp]` is configured, else the log.
    pub notifier: Arc<dyn Notifier>,
    /// Active connections with a URL, for the reachability check.
    pub targets: Vec<Target>,
}

impl Prepared {
    /// `p` if absolute, else relative to the configuration file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve_in(&self.base_dir, p)
    }
}

fn resolve_in(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads, validates, resolves secrets and builds the connectors. Every error is a
/// [`StartError::Config`] (exit code 2).
pub fn prepare(path: &Path) -> Result<Prepared, StartError> {
    let file = path.display().to_string();
    // Bounded; a file that is not text is located at its first bad byte, and shown no further.
    let text = config::read_config(path).map_err(|error| StartError::Config {
        error,
        snippet: String::new(),
    })?;
    let src = Source::new(&file, &text);
    let config = Config::parse(&text, &file).map_err(|e| src.wrap(e))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let secrets = resolve_secrets(&config, &base_dir, &src)?;
    let targets = targets(&config, &src)?;

    for conn in config.erp.iter().filter(|c| !c.active) {
        tracing::info!(connection = %conn.id, "ERP connection inactive: not loaded");
    }
    let built = wiring::connectors(&config, &base_dir, &|r| resolve_relative(r, &base_dir))
        .map_err(|e| located(&config, &src, e))?;
    if built.erps.is_empty() {
        tracing::warn!("no active ERP connection: nothing will be polled");
    }
    if config.smtp.is_none() {
        tracing::info!("no [smtp] section: problems are written to the log only");
    }
    let erps: HashMap<String, Arc<dyn Erp>> = built
        .erps
        .into_iter()
        .map(|(id, erp)| {
            let logged: Arc<dyn Erp> = Arc::new(LoggedErp::new(id.clone(), erp));
            (id, logged)
        })
        .collect();
    let psp: Arc<dyn Psp> = Arc::new(LoggedPsp::new(built.psp));
    let notifier = built.notifier;
    tracing::debug!(secrets, "secrets resolved");
    // The app holds the resolved copy: a webhook receiver that decrypts (Paygate) needs the
    // keys, and every reference resolved above.
    let config = config
        .with_secrets_resolved(&|r| resolve_relative(r, &base_dir))
        .map_err(|m| src.error(None, "method", &format!("cannot resolve a secret: {m}")))?;
    Ok(Prepared {
        config: Arc::new(config),
        base_dir,
        erps,
        psp,
        notifier,
        targets,
    })
}

/// Points a wiring error at the configuration line it is about.
fn located(config: &Config, src: &Source, e: WiringError) -> StartError {
    match e {
        WiringError::Erp {
            index,
            key,
            message,
            ..
        } => {
            let field = if key == "fixtures" {
                format!("erp[{index}].fixtures")
            } else {
                format!("erp[{index}]")
            };
            src.error(src.erp_span(index, key), &field, &message)
        }
        WiringError::Psp { kind, message } => {
            // The connector names the config it refused (`method config erp/mandant/tag:`);
            // else the first active config of the kind.
            let named = |m: &MethodConfig| {
                let name = format!("method config {}/{}/{}:", m.erp, m.mandant, m.erp_method);
                message.contains(&name)
            };
            let of_kind: Vec<usize> = (0..config.methods.len())
                .filter(|&i| config.methods[i].psp == kind && config.methods[i].active)
                .collect();
            let i = (of_kind.iter().copied())
                .find(|&i| named(&config.methods[i]))
                .or(of_kind.first().copied())
                .unwrap_or(0);
            let field = if message.contains(": api_host ") {
                "api_host"
            } else if kind == PspKind::Paygate {
                "encryption_key"
            } else {
                "private_key"
            };
            src.error(src.method_span(i, field), &format!("method[{i}]"), &message)
        }
        WiringError::Smtp(message) => src.error(src.smtp_span("host"), "smtp", &message),
    }
}

/// Resolves a secret reference; `file:` paths are relative to the configuration file.
fn resolve_relative(r: &SecretRef, base: &Path) -> Result<Secret, String> {
    match r {
        SecretRef::File(p) if p.is_relative() => SecretRef::File(base.join(p)).resolve_local(),
        other => other.resolve_local(),
    }
}

/// Resolves every secret reference once (env, file, plain); the values are dropped again, the
/// connectors that need them resolve them when they arrive. Errors name the field, never a value.
fn resolve_secrets(config: &Config, base_dir: &Path, src: &Source) -> Result<usize, StartError> {
    let mut refs: Vec<(String, Option<Range<usize>>, &SecretRef)> = Vec::new();
    for (i, c) in config.erp.iter().enumerate() {
        if let Some(p) = &c.password {
            refs.push((format!("erp[{i}].password"), src.erp_span(i, "password"), p));
        }
    }
    for (i, m) in config.methods.iter().enumerate() {
        let (key, mac) = if m.psp == PspKind::Paygate {
            ("encryption_key", "hmac_key")
        } else {
            ("private_key", "mac_key")
        };
        refs.push((
            format!("method[{i}].{key}"),
            src.method_span(i, key),
            &m.account.private_key,
        ));
        if let Some(r) = &m.account.extra.mac_key {
            refs.push((format!("method[{i}].{mac}"), src.method_span(i, mac), r));
        }
    }
    if let Some(s) = &config.smtp
        && let Some(p) = &s.password
    {
        refs.push(("smtp.password".into(), src.smtp_span("password"), p));
    }
    for (field, span, r) in &refs {
        let resolved = match r {
            SecretRef::File(p) => SecretRef::File(resolve_in(base_dir, p)).resolve_local(),
            other => other.resolve_local(),
        };
        if let Err(m) = resolved {
            return Err(src.error(
                span.clone(),
                field,
                &format!("cannot resolve the secret: {m}"),
            ));
        }
    }
    Ok(refs.len())
}

fn targets(config: &Config, src: &Source) -> Result<Vec<Target>, StartError> {
    let mut out = Vec::new();
    for (i, c) in config.erp.iter().enumerate() {
        let Some(url) = c.url.as_deref().filter(|_| c.active) else {
            continue;
        };
        let Some((host, port)) = host_port(url) else {
            return Err(src.error(
                src.erp_span(i, "url"),
                &format!("erp[{i}].url"),
                "not an http(s) URL with a host",
            ));
        };
        out.push(Target {
            connection: c.id.clone(),
            url: redact::mask_userinfo(url),
            host,
            port,
        });
    }
    Ok(out)
}

/// TCP-connects to every target (with [`CONNECT_TIMEOUT`]); the first failure is the error
/// (exit code 3).
pub async fn check_reachable(targets: &[Target]) -> Result<(), StartError> {
    for t in targets {
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await;
        let reason = match attempt {
            Ok(Ok(_)) => {
                tracing::info!(connection = %t.connection, url = %t.url, "reachable");
                continue;
            }
            Ok(Err(e)) => format!("cannot connect to {}:{}: {e}", t.host, t.port),
            Err(_) => format!(
                "no answer from {}:{} within {} s",
                t.host,
                t.port,
                CONNECT_TIMEOUT.as_secs()
            ),
        };
        return Err(StartError::Unreachable {
            connection: t.connection.clone(),
            url: t.url.clone(),
            reason,
        });
    }
    Ok(())
}

/// Host and port of an `http(s)://` URL (default ports 80/443; IPv6 literals in brackets).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_string(), port))
}

// ---------------------------------------------------------------------------------- locations

/// The configuration text plus the spans of the fields checked here. The library's `Config`
/// keeps no locations, so the few fields this module reports on are read again with spans.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
    spans: SpanDoc,
}

#[derive(Default, Deserialize)]
struct SpanDoc {
    #[serde(default)]
    erp: Vec<Spanned<SpanTable>>,
    #[serde(default)]
    method: Vec<Spanned<SpanTable>>,
    #[serde(default)]
    smtp: Option<Spanned<SpanTable>>,
}

/// Field spans of one table; every other key is ignored.
#[derive(Default, Deserialize)]
struct SpanTable {
    #[serde(default)]
    kind: Option<Spanned<toml::Value>>,
    #[serde(default)]
    url: Option<Spanned<toml::Value>>,
    #[serde(default)]
    password: Option<Spanned<toml::Value>>,
    #[serde(default)]
    fixtures: Option<Spanned<toml::Value>>,
    #[serde(default)]
    psp: Option<Spanned<toml::Value>>,
    #[serde(default)]
    private_key: Option<Spanned<toml::Value>>,
    #[serde(default)]
    host: Option<Spanned<toml::Value>>,
    #[serde(default)]
    api_host: Option<Spanned<toml::Value>>,
}

impl SpanTable {
    fn field(&self, name: &str) -> Option<Range<usize>> {
        let f = match name {
            "kind" => &self.kind,
            "url" => &self.url,
            "password" => &self.password,
            "fixtures" => &self.fixtures,
            "psp" => &self.psp,
            "private_key" => &self.private_key,
            "host" => &self.host,
            "api_host" => &self.api_host,
            _ => &None,
        };
        f.as_ref().map(Spanned::span)
    }
}

fn table_field(t: Option<&Spanned<SpanTable>>, name: &str) -> Option<Range<usize>> {
    let t = t?;
    t.get_ref().field(name).or_else(|| Some(t.span()))
}

impl<'a> Source<'a> {
    fn new(file: &'a str, text: &'a str) -> Source<'a> {
        // Only for locations: if this lenient read fails, errors are reported without a line.
        let spans = toml::from_str(text).unwrap_or_default();
        Source { file, text, spans }
    }

    fn erp_span(&self, i: usize, field: &str) -> Option<Range<usize>> {
        table_field(self.spans.erp.get(i), field)
    }

    fn method_span(&self, i: usize, field: &str) -> Option<Range<usize>> {
        table_field(self.spans.method.get(i), field)
    }

    fn smtp_span(&self, field: &str) -> Option<Range<usize>> {
        table_field(self.spans.smtp.as_ref(), field)
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, span: Option<Range<usize>>, field: &str, message: &str) -> StartError {
        // Without a span (the lenient re-read failed) the error is about the file as a whole.
        let at = span.map_or((0, 0), |s| self.line_col(s.start));
        self.wrap(ConfigError::new(self.file, at, field, message))
    }

    /// Adds the offending source line under the error, compiler style.
    fn wrap(&self, error: ConfigError) -> StartError {
        let snippet = snippet(self.text, error.line, error.column);
        StartError::Config { error, snippet }
    }
}

/// The offending line under an error, compiler style, with every secret masked
/// ([`redact::masked_line`]); nothing for a file-level error.
fn snippet(text: &str, line: usize, column: usize) -> String {
    let Some(src) = line
        .checked_sub(1)
        .and_then(|_| redact::masked_line(text, line))
    else {
        return String::new();
    };
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    let caret = " ".repeat(src.column(column).saturating_sub(1));
    format!("\n{pad} |\n{num} | {}\n{pad} | {caret}^", src.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }

    const MEMORY: &str = r#"
[tenant]
id = "acme"

[[erp]]
id = "shop"
kind = "memory"
fixtures = "orders.json"

[[method]]
erp = "shop"
mandant = "01"
erp_method = "CARD"
psp = "memory"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-test"
private_key = "plain:s-priv-test"
"#;

    fn config_error(e: StartError) -> (ConfigError, String) {
        match e {
            StartError::Config { error, snippet } => (error, snippet),
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn prepares_a_memory_config_with_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "orders.json",
            r#"{"orders": [], "payments": []}"#,
        );
        let cfg = write(dir.path(), "p.toml", MEMORY);
        let p = prepare(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.erps.contains_key("shop"));
        assert_eq!(p.resolve(Path::new("./x.db")), dir.path().join("./x.db"));
        assert!(p.targets.is_empty());
    }

    #[test]
    fn active_pixi_builds_the_connector_and_a_reachability_target() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = MEMORY.replace(
            "kind = \"memory\"\nfixtures = \"orders.json\"",
            "kind = \"pixi\"\nurl = \"http://127.0.0.1:9/soap\"\nuser = \"u\"\npassword = \"file:pw.txt\"",
        );
        write(dir.path(), "pw.txt", "pixi-secret\n");
        let cfg = write(dir.path(), "p.toml", &text);
        let p = prepare(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.erps.contains_key("shop"));
        assert_eq!(p.targets.len(), 1);
        assert_eq!(
            (p.targets[0].host.as_str(), p.targets[0].port),
            ("127.0.0.1", 9)
        );
    }

    #[test]
    fn pixi_with_a_missing_secret_is_a_located_error_without_the_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = MEMORY.replace(
            "kind = \"memory\"\nfixtures = \"orders.json\"",
            "kind = \"pixi\"\nurl = \"http://127.0.0.1:9/soap\"\nuser = \"u\"\npassword = \"env:PAYBRIDGE_TEST_UNSET_PW\"",
        );
        let cfg = write(dir.path(), "p.toml", &text);
        let (e, _) = config_error(prepare(&cfg).err().expect("secret missing"));
        assert!(e.field.starts_with("erp[0]"), "{e}");
        assert!(e.message.contains("PAYBRIDGE_TEST_UNSET_PW"), "{e}");
    }

    #[test]
    fn inactive_pixi_is_fine() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "orders.json", r#"{"orders": []}"#);
        let text = format!(
            "{MEMORY}\n[[erp]]\nid = \"later\"\nkind = \"pixi\"\nactive = false\nurl = \"http://127.0.0.1:9/\"\nuser = \"u\"\npassword = \"plain:pw\"\n"
        );
        let cfg = write(dir.path(), "p.toml", &text);
        let p = prepare(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.erps.contains_key("later"));
        assert!(p.targets.is_empty(), "inactive connections are not checked");
    }

    #[test]
    fn unresolvable_secret_names_the_field_not_the_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "orders.json", r#"{"orders": []}"#);
        let text = MEMORY.replace(
            "plain:s-priv-test",
            "env:PAYBRIDGE_TEST_SURELY_UNSET_VARIABLE",
        );
        let cfg = write(dir.path(), "p.toml", &text);
        let (e, _) = config_error(prepare(&cfg).err().expect("unset env var"));
        assert_eq!((e.line, e.field.as_str()), (19, "method[0].private_key"));
        assert!(
            e.message.contains("PAYBRIDGE_TEST_SURELY_UNSET_VARIABLE"),
            "{e}"
        );

        let text = MEMORY.replace("plain:s-priv-test", "file:missing-secret.txt");
        let cfg = write(dir.path(), "p.toml", &text);
        let (e, _) = config_error(prepare(&cfg).err().expect("missing file"));
        assert!(
            e.message
                .contains(&dir.path().join("missing-secret.txt").display().to_string()),
            "{e}"
        );

        write(dir.path(), "key.txt", "s-priv-from-file\n");
        let text = MEMORY.replace("plain:s-priv-test", "file:key.txt");
        let cfg = write(dir.path(), "p.toml", &text);
        assert!(
            prepare(&cfg).is_ok(),
            "file: secrets are relative to the config file"
        );
    }

    #[test]
    fn bad_fixtures_are_a_located_config_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "orders.json",
            r#"{"orders": [{"order_id": 1}]}"#,
        );
        let cfg = write(dir.path(), "p.toml", MEMORY);
        let (e, _) = config_error(prepare(&cfg).err().expect("bad fixtures"));
        assert_eq!((e.line, e.field.as_str()), (8, "erp[0].fixtures"));
        assert!(e.message.contains("orders.json:1:"), "{e}");
    }

    #[test]
    fn unzer_psp_is_set_up_and_a_bad_private_key_is_located() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "orders.json", r#"{"orders": []}"#);
        let cfg = write(
            dir.path(),
            "p.toml",
            &MEMORY.replace("psp = \"memory\"", "psp = \"unzer\""),
        );
        prepare(&cfg).unwrap_or_else(|e| panic!("{e}"));
        let bad = MEMORY
            .replace("psp = \"memory\"", "psp = \"unzer\"")
            .replace("plain:s-priv-test", "plain:not-a-key-4711");
        let cfg = write(dir.path(), "q.toml", &bad);
        let (e, _) = config_error(prepare(&cfg).err().expect("bad key refused"));
        assert_eq!(e.field, "method[0]");
        assert!(!e.to_string().contains("not-a-key-4711"), "{e}");
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let e = prepare(Path::new("/nonexistent/paybridge.toml"))
            .err()
            .expect("missing");
        assert_eq!(e.exit_code(), 2);
        // A file-level error: the file, no made-up position.
        assert!(
            e.to_string()
                .starts_with("/nonexistent/paybridge.toml: (file): cannot read the file:"),
            "{e}"
        );
        assert!(!e.to_string().contains(":0:0"), "{e}");
    }

    #[test]
    fn the_snippet_masks_secrets_and_keeps_the_caret_on_the_value() {
        let text = "[smtp]\npasword = \"plain:hunter2hunter2\"\n";
        assert_eq!(
            snippet(text, 2, 11),
            "\n  |\n2 | pasword = \"***\"\n  |           ^"
        );
        assert_eq!(snippet(text, 0, 0), "", "file-level: no excerpt");
        assert_eq!(snippet(text, 9, 1), "", "past the end");
    }

    #[test]
    fn parses_host_and_port() {
        let hp = |u: &str| host_port(u);
        assert_eq!(
            hp("http://pixi.example/soap"),
            Some(("pixi.example".into(), 80))
        );
        assert_eq!(
            hp("https://pixi.example"),
            Some(("pixi.example".into(), 443))
        );
        assert_eq!(
            hp("http://u:p@10.0.0.1:8081/x?y#z"),
            Some(("10.0.0.1".into(), 8081))
        );
        assert_eq!(hp("https://[::1]:8443/soap"), Some(("::1".into(), 8443)));
        assert_eq!(hp("https://[::1]/soap"), Some(("::1".into(), 443)));
        assert_eq!(hp("ftp://x"), None);
        assert_eq!(hp("http://:80/"), None);
        assert_eq!(hp("http://x:notaport/"), None);
        assert_eq!(hp("pixi.example:80"), None);
    }

    #[test]
    fn printed_urls_hide_credentials() {
        assert_eq!(
            redact::mask_userinfo("https://api:pw@pixi.example/soap"),
            "https://***@pixi.example/soap"
        );
        assert_eq!(
            redact::mask_userinfo("https://pixi.example/a@b"),
            "https://pixi.example/a@b"
        );
    }

    #[tokio::test]
    async fn unreachable_target_is_exit_code_3() {
        // A port that was just free: connecting is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let t = Target {
            connection: "main".into(),
            url: format!("http://127.0.0.1:{port}/soap"),
            host: "127.0.0.1".into(),
            port,
        };
        let e = check_reachable(std::slice::from_ref(&t))
            .await
            .expect_err("refused");
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("\"main\""), "{e}");
        assert!(e.to_string().contains(&t.url), "{e}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ok = Target { port, ..t };
        check_reachable(&[ok])
            .await
            .expect("listening port is reachable");
    }
}
