//! Configuration: tenant, server, ERP connections, payment-method configs, SMTP.
//!
//! Loaded from a TOML file. Every error names the file, the line and column, and the field, so an
//! operator can fix it without guessing. Secrets are references (`env:NAME`, `file:PATH`,
//! `plain:VALUE` for local trials; `ssm:` / `secretsmanager:` on AWS) resolved once at start into a
//! [`Secret`] whose `Debug`/`Display` print `***`.

use chrono::NaiveTime;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration error with its location: `file:line:column: field: message`, or
/// `file: field: message` for a file-level error (line 0: the file cannot be read at all).
/// Built with [`ConfigError::new`], which masks secrets in the field and the message; the
/// `Display` masks again, so even a hand-built error prints no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 for a file-level error (no position in the file).
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `line:column` (0:0 for a file-level error); field and message are masked
    /// ([`redact::mask_message`]).
    pub fn new(
        file: &str,
        (line, column): (usize, usize),
        field: &str,
        message: &str,
    ) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line,
            column,
            field: redact::mask_message(field, ""),
            message: redact::mask_message(message, field),
        }
    }

    /// Whether the error is about the file as a whole (it could not be read).
    pub fn is_file_level(&self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = redact::mask_message(&self.field, "");
        let message = redact::mask_message(&self.message, &self.field);
        if self.is_file_level() {
            write!(f, "{}: {field}: {message}", self.file)
        } else {
            let (file, line, column) = (&self.file, self.line, self.column);
            write!(f, "{file}:{line}:{column}: {field}: {message}")
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads a configuration file (at most [`read::CONFIG_LIMIT`]); a file that is not text is
/// located at its first bad byte, one that cannot be read is a file-level error.
pub fn read_config(path: &Path) -> Result<String, ConfigError> {
    read::read_text(path, read::CONFIG_LIMIT).map_err(|e| {
        let file = path.display().to_string();
        ConfigError::new(
            &file,
            e.position().unwrap_or((0, 0)),
            "(file)",
            &e.to_string(),
        )
    })
}

/// A resolved secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the one place that sends it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Plain(Secret),
    Ssm(String),
    SecretsManager(String),
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<SecretRef, String> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            "a secret must be a reference: env:NAME, file:PATH, plain:VALUE, ssm:/path or secretsmanager:NAME".to_string()
        })?;
        if rest.is_empty() {
            return Err(format!("empty {scheme}: reference"));
        }
        Ok(match scheme {
            "env" => SecretRef::Env(rest.to_string()),
            "file" => SecretRef::File(PathBuf::from(rest)),
            "plain" => SecretRef::Plain(Secret::new(rest)),
            "ssm" => SecretRef::Ssm(rest.to_string()),
            "secretsmanager" => SecretRef::SecretsManager(rest.to_string()),
            // The scheme is not echoed: a raw secret containing ':' would leak its first part.
            _ => {
                return Err(
                    "unknown secret scheme (use env:, file:, plain:, ssm: or secretsmanager:)"
                        .to_string(),
                );
            }
        })
    }

    /// Resolves env/file/plain references. SSM and Secrets Manager are resolved by the AWS
    /// entry points, so here they are an error.
    pub fn resolve_local(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(p) => read::read_text(p, read::SECRET_FILE_LIMIT)
                .map(|s| Secret(s.trim_end().to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display())),
            SecretRef::Plain(s) => Ok(s.clone()),
            SecretRef::Ssm(_) | SecretRef::SecretsManager(_) => {
                Err("ssm:/secretsmanager: references are resolved on AWS only".into())
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Processing mode of a payment-method config (behaviour.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Standard,
    Expert,
    /// behaviour.md §3.6: the order comes without a payment; paybridge asks the PSP for one
    /// and e-mails the customer the link; once paid, the money moves as in expert mode.
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErpKind {
    Pixi,
    /// In-process ERP fed from a JSON file: for local trials and tests.
    Memory,
}

/// The PSP a method config uses; [`crate::psp`] maps each kind to its connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PspKind {
    Unzer,
    /// Computop Paygate (classic key-value API, Blowfish or AES, HMAC-SHA256).
    Paygate,
    /// In-process PSP fed from a JSON file: for local trials and tests.
    Memory,
}

impl PspKind {
    /// The name in the configuration and in the webhook route `POST /webhooks/{name}`.
    pub fn name(self) -> &'static str {
        match self {
            PspKind::Unzer => "unzer",
            PspKind::Paygate => "paygate",
            PspKind::Memory => "memory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// Whether `t` (local time) is inside the window; handles windows across midnight.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub timezone: chrono_tz::Tz,
    pub quiet_hours: Option<QuietHours>,
    /// New events for payments with no known order (early or forged webhooks) accepted per
    /// hour; more are answered 429. Events for known payments are never refused.
    pub unverified_events_per_hour: u32,
    /// The shop's name as customers know it (payment-link e-mails); default: the tenant id.
    pub shop_name: String,
}

/// Default of `tenant.unverified_events_per_hour`.
pub const DEFAULT_UNVERIFIED_EVENTS_PER_HOUR: u32 = 2_000;

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: std::net::SocketAddr,
    pub database: PathBuf,
    pub poll_interval_secs: u64,
    /// Where the PSP and customers reach this deployment (`https://host[:port]`, no path):
    /// payment links name `{public_url}/webhooks/{psp}` for the PSP's notify and
    /// `{public_url}/paylink/…` for the customer's return. Required by `mode = "link"`.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ErpConnection {
    pub id: String,
    pub kind: ErpKind,
    pub active: bool,
    pub url: Option<String>,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    /// `memory` kind: JSON file with orders (and PSP payments).
    pub fixtures: Option<PathBuf>,
}

/// One payment-method config, keyed by (ERP connection, mandant, ERP payment method).
#[derive(Debug, Clone)]
pub struct MethodConfig {
    pub erp: String,
    pub mandant: String,
    pub erp_method: String,
    pub psp: PspKind,
    pub active: bool,
    pub mode: Mode,
    pub invoice_event: String,
    pub return_event: String,
    /// Largest difference absorbed as rounding, in minor units.
    pub rounding_tolerance: u32,
    /// How long the PSP holds an authorization, in days; `None`: the family's default
    /// ([`crate::engine::authorization`]).
    pub authorization_validity_days: Option<u32>,
    /// How long a payment may stay pending at import before the hint becomes an error.
    pub pending_error_after_hours: u32,
    /// The account at the PSP: read by the PSP's connector only, never by the engine.
    pub account: PspAccount,
}

/// A method config's account at its PSP (`psp = "…"`): an identifier the PSP names in its
/// webhooks, the secret the connector authenticates with, and the API host. Only the
/// connector of the config's PSP kind reads it.
#[derive(Debug, Clone)]
pub struct PspAccount {
    /// The account's public identifier (Unzer: the public key; Paygate: the MerchantID; named
    /// in every webhook).
    pub public_key: String,
    /// The secret the connector authenticates or encrypts with (Unzer: the private key;
    /// Paygate: the Blowfish or AES password).
    pub private_key: SecretRef,
    /// API host; the connector picks its default (Unzer: by key prefix) when absent.
    pub api_host: Option<String>,
    /// What only some PSPs have; empty for the others.
    pub extra: AccountExtra,
}

/// The parts of a PSP account only some PSPs have (`psp = "paygate"`: its HMAC password, its
/// cipher and the payment method, which its status reads do not name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountExtra {
    /// A second secret the PSP signs messages with (Paygate: the HMAC password).
    pub mac_key: Option<SecretRef>,
    /// The cipher of the PSP's message envelope (Paygate: Blowfish unless the account was
    /// switched to AES).
    pub cipher: Cipher,
    /// The payment method at the PSP (`card`, `klarna`, `billsafe`, `paypal`, `sofort`), for
    /// PSPs whose payment reads do not name it.
    pub psp_method: Option<String>,
}

/// The cipher of a PSP's message envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cipher {
    #[default]
    Blowfish,
    Aes,
}

impl MethodConfig {
    /// The config's identity: (ERP connection, mandant, ERP payment method).
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.erp, &self.mandant, &self.erp_method)
    }
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
    pub from: String,
    pub to: String,
    pub starttls: bool,
}

/// The whole configuration of one paybridge process (one tenant).
#[derive(Debug, Clone)]
pub struct Config {
    pub tenant: Tenant,
    pub server: Server,
    pub erp: Vec<ErpConnection>,
    pub methods: Vec<MethodConfig>,
    pub smtp: Option<Smtp>,
}

impl Config {
    /// The active config for an order's (connection, mandant, method tag); an inactive
    /// connection deactivates its configs.
    pub fn method_for(&self, erp: &str, mandant: &str, erp_method: &str) -> Option<&MethodConfig> {
        let conn_active = self.erp.iter().any(|c| c.id == erp && c.active);
        self.methods
            .iter()
            .find(|m| m.key() == (erp, mandant, erp_method))
            .filter(|m| m.active && conn_active)
    }

    /// Whether a method config of PSP `kind` has this public key (webhooks name the key, not
    /// the config).
    pub fn has_public_key(&self, kind: PspKind, key: &str) -> bool {
        self.methods
            .iter()
            .any(|m| m.psp == kind && m.account.public_key == key)
    }

    /// A copy with every secret reference the connectors and webhooks read (active
    /// connections and method configs, `[smtp]`) resolved with `resolve` into `plain:` (in
    /// memory only), so a webhook receiver that needs a key finds it without IO. The error
    /// names the field, never a value.
    pub fn with_secrets_resolved(
        &self,
        resolve: &(dyn Fn(&SecretRef) -> Result<Secret, String> + Sync),
    ) -> Result<Config, String> {
        let mut copy = self.clone();
        let fix = |r: &mut SecretRef, what: &str| -> Result<(), String> {
            let s = resolve(r).map_err(|e| format!("{what}: {e}"))?;
            *r = SecretRef::Plain(s);
            Ok(())
        };
        for c in copy.erp.iter_mut().filter(|c| c.active) {
            if let Some(p) = c.password.as_mut() {
                fix(p, &format!("erp {:?} password", c.id))?;
            }
        }
        for m in copy.methods.iter_mut().filter(|m| m.active) {
            let name = format!("method {}/{}/{}", m.erp, m.mandant, m.erp_method);
            fix(&mut m.account.private_key, &name)?;
            if let Some(r) = m.account.extra.mac_key.as_mut() {
                fix(r, &name)?;
            }
        }
        if let Some(p) = copy.smtp.as_mut().and_then(|s| s.password.as_mut()) {
            fix(p, "smtp password")?;
        }
        Ok(copy)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let loc = Locator { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // Without a span (rare) the error is about the document: its first line.
            let (line, column) = e.span().map_or((1, 1), |s| loc.line_col(s.start));
            let message = removed_key(e.message()).unwrap_or(e.message());
            ConfigError::new(file, (line, column), &loc.key_on_line(line), message)
        })?;
        raw.validate(&loc)
    }
}

/// Keys an earlier version of the file had, each with what to write instead: a file that still
/// has one gets this message at the key rather than serde's generic "unknown field".
const REMOVED_KEYS: &[(&str, &str)] = &[(
    "notify_email",
    "`notify_email` is no longer read: problem e-mails go to `smtp.to`; \
     remove it and set `to` in the [smtp] section instead",
)];

/// The message for an "unknown field" error about a removed key.
fn removed_key(message: &str) -> Option<&'static str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, _) = rest.split_once('`')?;
    REMOVED_KEYS
        .iter()
        .find(|(removed, _)| *removed == key)
        .map(|(_, instead)| *instead)
}

struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// The key assigned on a line (`key = …`), else the table header, for error messages;
    /// read from the masked line, so a value (or a line inside a multi-line string) never is.
    fn key_on_line(&self, line: usize) -> String {
        redact::masked_line(self.text, line)
            .and_then(|l| l.key())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "(syntax)".into())
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        let at = self.line_col(span.start);
        Err(ConfigError::new(self.file, at, field, &message.into()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tenant: Spanned<RawTenant>,
    #[serde(default)]
    server: Option<Spanned<RawServer>>,
    #[serde(default)]
    erp: Vec<Spanned<RawErp>>,
    #[serde(default)]
    method: Vec<Spanned<RawMethod>>,
    #[serde(default)]
    smtp: Option<Spanned<RawSmtp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    id: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    /// `"00:00-04:00"`, or `"off"`.
    #[serde(default)]
    quiet_hours: Option<Spanned<String>>,
    #[serde(default)]
    unverified_events_per_hour: Option<Spanned<u32>>,
    #[serde(default)]
    shop_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    poll_interval_secs: Option<Spanned<u64>>,
    #[serde(default)]
    public_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErp {
    id: Spanned<String>,
    kind: ErpKind,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<SecretRef>,
    #[serde(default)]
    fixtures: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    erp: Spanned<String>,
    mandant: String,
    erp_method: Spanned<String>,
    psp: PspKind,
    #[serde(default = "yes")]
    active: bool,
    mode: Spanned<Mode>,
    invoice_event: Spanned<String>,
    return_event: Spanned<String>,
    #[serde(default)]
    rounding_tolerance: u32,
    #[serde(default)]
    authorization_validity_days: Option<Spanned<u32>>,
    #[serde(default)]
    pending_error_after_hours: Option<Spanned<u32>>,
    /// Unzer's public key (`psp = "unzer"` / `"memory"`).
    #[serde(default)]
    public_key: Option<Spanned<String>>,
    #[serde(default)]
    private_key: Option<SecretRef>,
    /// Paygate (`psp = "paygate"`): MerchantID, Blowfish/AES password, HMAC password, cipher,
    /// payment method.
    #[serde(default)]
    merchant_id: Option<Spanned<String>>,
    #[serde(default)]
    encryption_key: Option<SecretRef>,
    #[serde(default)]
    hmac_key: Option<SecretRef>,
    #[serde(default)]
    encryption: Option<Cipher>,
    #[serde(default)]
    psp_method: Option<Spanned<String>>,
    #[serde(default)]
    api_host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default = "smtp_port")]
    port: u16,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<SecretRef>,
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default = "yes")]
    starttls: bool,
}

fn yes() -> bool {
    true
}

fn smtp_port() -> u16 {
    587
}

pub mod read;
pub mod redact;
mod validate;

#[cfg(test)]
mod tests;
