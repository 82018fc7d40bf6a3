//! AWS entry-point support: what the three Lambda functions (`unzer-webhook`, `erp-poller`,
//! `payment-worker`) share, so each of their handlers is "parse the event, call one function
//! here or in [`crate::app`], shape the answer".
//!
//! | item | what it is for |
//! |---|---|
//! | [`init_tracing`] | JSON logs on stdout, level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` |
//! | [`AwsEnv`] | the function's environment: `PAYBRIDGE_CONFIG`, `PAYBRIDGE_TABLE`, `PAYBRIDGE_QUEUE_URL` |
//! | [`Backends`] | configuration, DynamoDB store, SQS queue: built once, in the INIT phase |
//! | [`SecretsExtension`] | `ssm:` / `secretsmanager:` references through the Parameters and Secrets Lambda Extension |
//! | [`resolve_config_secrets`] | every secret a configuration uses, resolved once per cold start |
//! | [`LazyApp`] | the [`App`]: at INIT when it needs no extension secret, else on the first invocation |
//! | [`app_from_env`] | all of the above in one call, for processes that are not in a Lambda INIT phase |
//! | [`handle_sqs_batch`] | the payment worker: one SQS batch → jobs → partial batch failures |
//! | [`handle_schedule`], [`ScheduleTrigger`] | the ERP poller: one poll cycle per schedule tick |
//!
//! Why the [`App`] may be built on the first invocation: the AWS documentation on the
//! Parameters and Secrets extension says it can be called only during the INVOKE phase, not
//! during INIT. Configuration, SDK clients and the DynamoDB warm-up (architecture.md §6b) happen
//! in INIT regardless; only the secret look-ups and the connectors built from them wait for the
//! first event, once per execution environment. A configuration whose secrets are all `env:`,
//! `file:` or `plain:` is built completely in INIT.
//!
//! Secrets never appear in logs or errors: errors name the reference (`ssm:/paybridge/…`), never
//! the value, and [`Secret`] prints `***`.

use crate::app::{App, AppError, JobOutcome, PollReport, Settings};
use crate::config::{Config, ConfigError, Secret, SecretRef};
use crate::queue::sqs::SqsQueue;
use crate::queue::{Job, Queue};
use crate::store::Store;
use crate::store::dynamo::DynamoStore;
use crate::wiring::{self, WiringError};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::Instrument;
use url::Url;

/// Path of the TOML configuration, bundled with the function or mounted.
pub const ENV_CONFIG: &str = "PAYBRIDGE_CONFIG";
/// Name of the DynamoDB table.
pub const ENV_TABLE: &str = "PAYBRIDGE_TABLE";
/// URL of the SQS job queue.
pub const ENV_QUEUE_URL: &str = "PAYBRIDGE_QUEUE_URL";
/// Port of the Parameters and Secrets extension (the extension's own setting).
pub const ENV_EXTENSION_PORT: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";
/// The extension's default port.
pub const DEFAULT_EXTENSION_PORT: u16 = 2773;
/// Header that authenticates a call to the extension; its value is `AWS_SESSION_TOKEN`.
pub const EXTENSION_TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

/// One call to the extension (it answers from its cache, or asks SSM / Secrets Manager).
const EXTENSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses before the second and third attempt of an extension call that failed transiently.
const EXTENSION_RETRY_PAUSES: [Duration; 2] =
    [Duration::from_millis(100), Duration::from_millis(400)];
/// The INIT-phase DynamoDB warm-up must not eat the 10 s INIT budget.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a function could not start (or could not build its [`App`]). Messages name variables,
/// files and secret references, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("environment variable {name}: {message}")]
    BadEnv { name: &'static str, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what} ({reference}): {message}")]
    Secret {
        what: String,
        reference: String,
        message: String,
    },
    #[error(transparent)]
    Wiring(#[from] WiringError),
    #[error("HTTP client for the secrets extension: {0}")]
    Http(String),
}

// ------------------------------------------------------------------------------ tracing

/// Installs JSON logging on stdout (one object per line, what CloudWatch Logs and Lambda's JSON
/// log format expect). The level comes from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
/// controls), else `RUST_LOG` (any `EnvFilter` directive), else `info`. Calling it twice is
/// harmless: the second call changes nothing.
pub fn init_tracing() {
    let directive = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| match l.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_string(), // Lambda's FATAL; tracing has no such level
            other => other.to_string(),
        })
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
}

// ------------------------------------------------------------------------------ environment

/// The function's environment, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    /// [`ENV_CONFIG`]: the TOML configuration file.
    pub config_path: PathBuf,
    /// [`ENV_TABLE`]: the DynamoDB table.
    pub table: String,
    /// [`ENV_QUEUE_URL`]: the SQS job queue.
    pub queue_url: String,
}

impl AwsEnv {
    /// Reads the process environment. (`AWS_ENDPOINT_URL`, region and credentials are read by
    /// `aws-config` itself.)
    pub fn from_env() -> Result<AwsEnv, AwsError> {
        AwsEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`AwsEnv::from_env`] with a custom lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<AwsEnv, AwsError> {
        let required = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or(AwsError::MissingEnv(name))
        };
        Ok(AwsEnv {
            config_path: PathBuf::from(required(ENV_CONFIG)?),
            table: required(ENV_TABLE)?,
            queue_url: required(ENV_QUEUE_URL)?,
        })
    }
}

// ------------------------------------------------------------------------------ secrets

/// Client of the AWS Parameters and Secrets Lambda Extension, the layer that serves
/// `GET /systemsmanager/parameters/get?name=…&withDecryption=true` and
/// `GET /secretsmanager/get?secretId=…` on `localhost`, authenticated by the header
/// [`EXTENSION_TOKEN_HEADER`] carrying the function's `AWS_SESSION_TOKEN`. It caches answers
/// (default 300 s) and calls SSM / Secrets Manager with the function's own role, so the role
/// needs `ssm:GetParameter` / `secretsmanager:GetSecretValue` (and `kms:Decrypt` for
/// customer-managed keys). Only usable in the INVOKE phase (see the module docs).
#[derive(Clone)]
pub struct SecretsExtension {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
}

impl std::fmt::Debug for SecretsExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsExtension")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// GetParameter's answer, as the extension passes it on.
#[derive(Deserialize)]
struct SsmAnswer {
    #[serde(rename = "Parameter")]
    parameter: SsmParameter,
}

#[derive(Deserialize)]
struct SsmParameter {
    #[serde(rename = "Value")]
    value: String,
}

/// GetSecretValue's answer: a string secret, or a binary one (base64).
#[derive(Deserialize)]
struct SecretAnswer {
    #[serde(rename = "SecretString", default)]
    secret_string: Option<String>,
    #[serde(rename = "SecretBinary", default)]
    secret_binary: Option<String>,
}

impl SecretsExtension {
    /// The extension of this execution environment: `http://localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`
    /// (default 2773), token from `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<SecretsExtension, AwsError> {
        let port = match std::env::var(ENV_EXTENSION_PORT) {
            Ok(p) => p.trim().parse::<u16>().map_err(|e| AwsError::BadEnv {
                name: ENV_EXTENSION_PORT,
                message: e.to_string(),
            })?,
            Err(_) => DEFAULT_EXTENSION_PORT,
        };
        let base =
            Url::parse(&format!("http://localhost:{port}/")).map_err(|e| AwsError::BadEnv {
                name: ENV_EXTENSION_PORT,
                message: e.to_string(),
            })?;
        let token = std::env::var("AWS_SESSION_TOKEN").ok().map(Secret::new);
        SecretsExtension::new(base, token)
    }

    /// An extension client on `base` (tests point it at a fake).
    pub fn new(base: Url, token: Option<Secret>) -> Result<SecretsExtension, AwsError> {
        let http = reqwest::Client::builder()
            .no_proxy() // localhost: never through an HTTP(S)_PROXY
            .timeout(EXTENSION_TIMEOUT)
            .build()
            .map_err(|e| AwsError::Http(e.to_string()))?;
        Ok(SecretsExtension { http, base, token })
    }

    /// The (decrypted) value of an SSM parameter, e.g. `/paybridge/acme/unzer-private-key`.
    pub async fn ssm_parameter(&self, name: &str) -> Result<Secret, String> {
        let url = self.url(
            "systemsmanager/parameters/get",
            &[("name", name), ("withDecryption", "true")],
        )?;
        let answer: SsmAnswer = self.get_json(url).await?;
        Ok(Secret::new(answer.parameter.value))
    }

    /// The current value of a Secrets Manager secret (name or ARN). A binary secret must be
    /// UTF-8 text.
    pub async fn secret_value(&self, secret_id: &str) -> Result<Secret, String> {
        let url = self.url("secretsmanager/get", &[("secretId", secret_id)])?;
        let answer: SecretAnswer = self.get_json(url).await?;
        match (answer.secret_string, answer.secret_binary) {
            (Some(s), _) => Ok(Secret::new(s)),
            (None, Some(b)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|_| "SecretBinary is not valid base64".to_string())?;
                String::from_utf8(bytes)
                    .map(Secret::new)
                    .map_err(|_| "SecretBinary is not UTF-8 text".to_string())
            }
            (None, None) => Err("the answer has neither SecretString nor SecretBinary".into()),
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, String> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| format!("bad extension URL: {e}"))?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// GET with a few quick retries on connection errors, 429 and 5xx. Error texts carry the
    /// status and the start of an error body (never a success body: that holds the secret).
    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, String> {
        let mut last = String::new();
        for attempt in 0..=EXTENSION_RETRY_PAUSES.len() {
            if attempt > 0 {
                tokio::time::sleep(EXTENSION_RETRY_PAUSES[attempt - 1]).await;
            }
            let mut request = self.http.get(url.clone());
            if let Some(token) = &self.token {
                request = request.header(EXTENSION_TOKEN_HEADER, token.expose());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("extension not reachable: {}", without_url(&e));
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the extension's answer: {}", without_url(&e)))?;
                // serde's message could quote part of the body, i.e. of the secret: position only.
                return serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the extension's answer is not the expected JSON (line {}, column {})",
                        e.line(),
                        e.column()
                    )
                });
            }
            let body = response.text().await.unwrap_or_default();
            let snippet: String = body.chars().take(300).collect();
            last = format!(
                "the extension answered HTTP {}: {}",
                status.as_u16(),
                snippet.trim()
            );
            if !(status.is_server_error() || status.as_u16() == 429) {
                break;
            }
        }
        Err(last)
    }
}

/// A reqwest error without its URL (the query names the parameter; harmless, but noisy).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<extension>");
    }
    text
}

/// Whether a configuration uses `ssm:` or `secretsmanager:` references (in the parts that are
/// active), i.e. whether building its [`App`] must wait for the INVOKE phase.
pub fn needs_extension(config: &Config) -> bool {
    let mut copy = config.clone();
    secret_refs_mut(&mut copy)
        .iter()
        .any(|(_, r)| matches!(r, SecretRef::Ssm(_) | SecretRef::SecretsManager(_)))
}

/// The secret references the connectors of `config` will resolve, with what each is for.
fn secret_refs_mut(config: &mut Config) -> Vec<(String, &mut SecretRef)> {
    let mut refs = Vec::new();
    for conn in config.erp.iter_mut().filter(|c| c.active) {
        if let Some(r) = conn.password.as_mut() {
            refs.push((format!("erp {:?} password", conn.id), r));
        }
    }
    for m in config.methods.iter_mut().filter(|m| m.active) {
        refs.push((
            format!(
                "method {}/{}/{} private_key",
                m.erp, m.mandant, m.erp_method
            ),
            &mut m.account.private_key,
        ));
    }
    if let Some(smtp) = config.smtp.as_mut()
        && let Some(r) = smtp.password.as_mut()
    {
        refs.push(("smtp password".into(), r));
    }
    refs
}

/// Returns a copy of `config` in which every secret reference of an active connection, active
/// payment-method config and `[smtp]` is resolved and replaced by `plain:` (in memory only):
/// `ssm:` / `secretsmanager:` through `extension`, `env:` / `file:` locally, relative `file:`
/// paths against `base_dir` (the configuration's directory). Each distinct reference is fetched
/// once. The copy goes to [`wiring::connectors`], whose connectors then need no AWS access to
/// read a secret; the [`App`] keeps the original configuration with references only.
pub async fn resolve_config_secrets(
    config: &Config,
    base_dir: &Path,
    extension: &SecretsExtension,
) -> Result<Config, AwsError> {
    let mut cache: HashMap<String, Secret> = HashMap::new();
    let mut out = config.clone();
    for (what, reference) in secret_refs_mut(&mut out) {
        let secret = resolve_ref(reference, base_dir, extension, &mut cache)
            .await
            .map_err(|message| AwsError::Secret {
                what,
                reference: describe_ref(reference),
                message,
            })?;
        *reference = SecretRef::Plain(secret);
    }
    Ok(out)
}

async fn resolve_ref(
    reference: &SecretRef,
    base_dir: &Path,
    extension: &SecretsExtension,
    cache: &mut HashMap<String, Secret>,
) -> Result<Secret, String> {
    let key = describe_ref(reference);
    if let Some(s) = cache.get(&key) {
        return Ok(s.clone());
    }
    let secret = match reference {
        SecretRef::Ssm(name) => extension.ssm_parameter(name).await?,
        SecretRef::SecretsManager(id) => extension.secret_value(id).await?,
        SecretRef::File(p) if p.is_relative() => {
            SecretRef::File(base_dir.join(p)).resolve_local()?
        }
        other => other.resolve_local()?,
    };
    cache.insert(key, secret.clone());
    Ok(secret)
}

/// A reference as written in the configuration; `plain:` values are not repeated.
fn describe_ref(reference: &SecretRef) -> String {
    match reference {
        SecretRef::Env(n) => format!("env:{n}"),
        SecretRef::File(p) => format!("file:{}", p.display()),
        SecretRef::Plain(_) => "plain:***".into(),
        SecretRef::Ssm(n) => format!("ssm:{n}"),
        SecretRef::SecretsManager(n) => format!("secretsmanager:{n}"),
    }
}

// ------------------------------------------------------------------------------ the App

/// What a function builds once in the INIT phase: the configuration, the SDK clients behind the
/// store and the queue, and the lease identity of this execution environment.
pub struct Backends {
    pub config: Arc<Config>,
    /// The configuration file's directory: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// Identity for poller leases: function name and log stream (one per execution environment).
    pub holder: String,
}

impl Backends {
    /// [`AwsEnv::from_env`], the shared SDK configuration built once
    /// (`aws_config::load_defaults`, which honours `AWS_ENDPOINT_URL`, region and credentials
    /// from the environment), then [`Backends::connect`].
    pub async fn from_env() -> Result<Backends, AwsError> {
        let env = AwsEnv::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Backends::connect(&env, &sdk).await
    }

    /// Loads the configuration `env` names, builds one DynamoDB and one SQS client from `sdk`,
    /// and makes one cheap DynamoDB read so the TLS handshake is paid in INIT, not by the first
    /// event (architecture.md §6b). A failed warm-up is logged, not fatal: the first event will
    /// tell.
    pub async fn connect(env: &AwsEnv, sdk: &aws_config::SdkConfig) -> Result<Backends, AwsError> {
        let config = Config::load(&env.config_path)?;
        let base_dir = env
            .config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), env.table.clone());
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), env.queue_url.clone());
        warm_up(&store).await;
        tracing::info!(
            tenant = %config.tenant.id,
            table = %env.table,
            config = %env.config_path.display(),
            "backends ready"
        );
        Ok(Backends {
            config: Arc::new(config),
            base_dir,
            store: Arc::new(store),
            queue: Arc::new(queue),
            holder: lease_holder(),
        })
    }

    /// Resolves the configuration's secrets (see [`resolve_config_secrets`]), builds the
    /// connectors and returns the [`App`].
    pub async fn app(&self, extension: &SecretsExtension) -> Result<App, AwsError> {
        let resolved = resolve_config_secrets(&self.config, &self.base_dir, extension).await?;
        let connectors = wiring::connectors(&resolved, &self.base_dir, &SecretRef::resolve_local)?;
        Ok(App {
            config: Arc::clone(&self.config),
            store: Arc::clone(&self.store),
            queue: Arc::clone(&self.queue),
            erps: connectors.erps,
            psp: connectors.psp,
            notifier: connectors.notifier,
            settings: Settings::default(),
            holder: self.holder.clone(),
        })
    }
}

/// A read of a key that never exists (like `/health`): opens the connection to DynamoDB.
async fn warm_up(store: &dyn Store) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(
        WARM_UP_TIMEOUT,
        store.get("WARMUP", "PING", Utc::now().timestamp()),
    )
    .await
    {
        Ok(Ok(_)) => tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "DynamoDB warm-up done"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "DynamoDB warm-up failed"),
        Err(_) => tracing::warn!(
            timeout_ms = WARM_UP_TIMEOUT.as_millis() as u64,
            "DynamoDB warm-up timed out"
        ),
    }
}

fn lease_holder() -> String {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "paybridge".into());
    match std::env::var("AWS_LAMBDA_LOG_STREAM_NAME") {
        Ok(stream) => format!("{name}/{stream}"),
        Err(_) => format!("{name}/pid-{}", std::process::id()),
    }
}

/// Builds the whole [`App`] from the environment in one go: [`Backends::from_env`], then
/// secrets through the extension. Fine where the extension already answers (or is not needed);
/// Lambda `main`s use [`LazyApp`] instead, because the extension does not serve during INIT.
pub async fn app_from_env() -> Result<App, AwsError> {
    let backends = Backends::from_env().await?;
    backends.app(&SecretsExtension::from_env()?).await
}

/// The [`App`] of one execution environment, built at most once: in INIT when the
/// configuration needs no extension secret, else on the first invocation. A failed build is
/// not cached: that invocation fails (SQS redelivers, API Gateway answers 5xx, the scheduler's
/// next tick comes) and the next one tries again.
pub struct LazyApp {
    backends: Backends,
    extension: SecretsExtension,
    app: OnceCell<Arc<App>>,
    router: OnceCell<axum::Router>,
}

impl LazyApp {
    /// [`Backends::from_env`] and [`SecretsExtension::from_env`]; builds the [`App`] right away
    /// unless a secret must come from the extension.
    pub async fn from_env() -> Result<LazyApp, AwsError> {
        let lazy = LazyApp::new(Backends::from_env().await?, SecretsExtension::from_env()?);
        if needs_extension(&lazy.backends.config) {
            tracing::info!(
                "secrets come from the Parameters and Secrets extension: the app is built on the first invocation"
            );
        } else {
            lazy.get().await?;
        }
        Ok(lazy)
    }

    pub fn new(backends: Backends, extension: SecretsExtension) -> LazyApp {
        LazyApp {
            backends,
            extension,
            app: OnceCell::new(),
            router: OnceCell::new(),
        }
    }

    /// The app, built on the first call.
    pub async fn get(&self) -> Result<Arc<App>, AwsError> {
        self.app
            .get_or_try_init(|| async {
                let app = self.backends.app(&self.extension).await?;
                tracing::info!(erp_connections = app.erps.len(), "app ready");
                Ok::<_, AwsError>(Arc::new(app))
            })
            .await
            .cloned()
    }

    /// The one HTTP router ([`crate::http::router`]) over the app, built on the first call.
    pub async fn router(&self) -> Result<axum::Router, AwsError> {
        let app = self.get().await?;
        Ok(self
            .router
            .get_or_init(|| async { crate::http::router(app) })
            .await
            .clone())
    }
}

// ------------------------------------------------------------------------------ payment worker

/// Runs one SQS batch (the `payment-worker` function; the event source mapping must enable
/// `ReportBatchItemFailures`). Records run one after another, so a worker makes at most one PSP
/// call at a time and the event source's `MaximumConcurrency` caps the PSP load.
///
/// Per record:
/// - body not a [`Job`] (or no body) → reported failed, without logging the body. It comes
///   back after the queue's visibility timeout and moves to the dead-letter queue after
///   `maxReceiveCount` receives, where a human looks (the DLQ alarm).
/// - [`JobOutcome::Done`] → success: Lambda deletes the message.
/// - [`JobOutcome::RetryAt`] → reported failed, so SQS delivers it again; nothing is dropped. To
///   make the next delivery happen at the time the app asked for (backoff, end of the ERP quiet
///   hours) instead of after the queue's visibility timeout, the message's visibility is first
///   set to that delay (ChangeMessageVisibility through [`Queue::retry_later`], at most 12 h).
///   That is best effort: if it fails, the retry follows the queue's visibility timeout. Either
///   way each retry counts as a receive towards `maxReceiveCount`.
/// - an [`AppError`] (store or queue trouble) → reported failed; retried after the queue's
///   visibility timeout.
///
/// A failed record without a message id is reported with an empty id, which makes Lambda treat
/// the whole batch as failed (retried in full; jobs are idempotent) rather than lose it.
pub async fn handle_sqs_batch(app: &App, event: SqsEvent, now: DateTime<Utc>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let total = event.records.len();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receives = record
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str)
            .unwrap_or("?");
        let span = tracing::info_span!("sqs_record", message_id = %id, receives);
        if !handle_record(app, record, now).instrument(span).await {
            if id.is_empty() {
                tracing::warn!("a failed record has no message id: the whole batch is retried");
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    tracing::info!(
        records = total,
        failed = response.batch_item_failures.len(),
        "SQS batch handled"
    );
    response
}

/// One record; `true` when it is done and may be deleted.
async fn handle_record(app: &App, record: &SqsMessage, now: DateTime<Utc>) -> bool {
    let Some(body) = record.body.as_deref() else {
        tracing::warn!("message without a body: left for the dead-letter queue");
        return false;
    };
    let job: Job = match serde_json::from_str(body) {
        Ok(job) => job,
        Err(e) => {
            // Only the position: the body itself may be anything.
            tracing::warn!(
                kind = ?e.classify(),
                line = e.line(),
                column = e.column(),
                bytes = body.len(),
                "message body is not a job: left for the dead-letter queue"
            );
            return false;
        }
    };
    match app.run_job(&job, now).await {
        Ok(JobOutcome::Done) => {
            tracing::info!(?job, "job done");
            true
        }
        Ok(JobOutcome::RetryAt(at)) => {
            let delay = (at - now)
                .to_std()
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            match record.receipt_handle.as_deref() {
                Some(receipt) => {
                    if let Err(e) = app
                        .queue
                        .retry_later(receipt, delay, now.timestamp_millis())
                        .await
                    {
                        tracing::warn!(error = %e, "could not delay the message: it returns after the queue's visibility timeout");
                    }
                }
                None => tracing::warn!(
                    "no receipt handle: the message returns after the queue's visibility timeout"
                ),
            }
            tracing::info!(?job, retry_at = %at, "job not finished: delivered again later");
            false
        }
        Err(e) => {
            tracing::warn!(?job, error = %e, "job failed: delivered again after the visibility timeout");
            false
        }
    }
}

// ------------------------------------------------------------------------------ ERP poller

/// What invoked the poller. EventBridge Scheduler (SAM `ScheduleV2`) delivers the schedule's
/// `Input` as it is: ours (infra/template.yaml) is
/// `{"source":"paybridge.schedule","scheduled_time":"<aws.scheduler.scheduled-time>","execution_id":"<aws.scheduler.execution-id>","attempt":"<aws.scheduler.attempt-number>"}`,
/// with the placeholders filled in by the scheduler. A classic EventBridge rule (SAM
/// `Schedule`) delivers its "Scheduled Event" envelope instead. Both just mean "poll now"; the
/// fields are for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleTrigger {
    /// A classic rule's scheduled event.
    Rule {
        id: Option<String>,
        time: Option<DateTime<Utc>>,
    },
    /// EventBridge Scheduler, or any other payload (a manual invoke, `{}`).
    Scheduler {
        scheduled_time: Option<String>,
        execution_id: Option<String>,
        attempt: Option<String>,
    },
}

impl ScheduleTrigger {
    /// Classifies any JSON payload; never fails.
    pub fn from_event(event: &Value) -> ScheduleTrigger {
        if let Ok(rule) = serde_json::from_value::<EventBridgeEvent>(event.clone()) {
            return ScheduleTrigger::Rule {
                id: rule.id,
                time: rule.time,
            };
        }
        let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_string);
        ScheduleTrigger::Scheduler {
            scheduled_time: field("scheduled_time"),
            execution_id: field("execution_id"),
            attempt: field("attempt"),
        }
    }
}

/// One poll cycle (the `erp-poller` function): [`App::poll_cycle`] at `now`, logged. An error
/// fails the invocation (visible in the function's Errors alarm); the next tick polls again —
/// the watermark only advances after the work found is durably planned.
pub async fn handle_schedule(app: &App, now: DateTime<Utc>) -> Result<PollReport, AppError> {
    let report = app.poll_cycle(now).await?;
    tracing::info!(
        orders_seen = report.orders_seen,
        ops_planned = report.ops_planned,
        held_quiet_hours = report.held_quiet_hours,
        held_lease = report.held_lease,
        swept_ops = report.swept_ops,
        swept_events = report.swept_events,
        "poll cycle done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erp::memory::MemoryErp;
    use crate::notify::LogNotifier;
    use crate::psp::memory::MemoryPsp;
    use crate::queue::sqlite::SqliteQueue;
    use crate::store::sqlite::SqliteStore;
    use axum::Json;
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;

    const TOKEN: &str = "session-token-for-tests";

    /// A stand-in for the Parameters and Secrets extension on a loopback port.
    async fn fake_extension() -> Url {
        fn authorized(h: &HeaderMap) -> bool {
            h.get(EXTENSION_TOKEN_HEADER).and_then(|v| v.to_str().ok()) == Some(TOKEN)
        }
        async fn ssm(h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
            if !authorized(&h) {
                return (StatusCode::UNAUTHORIZED, "missing token").into_response();
            }
            if q.get("withDecryption").map(String::as_str) != Some("true") {
                return (StatusCode::BAD_REQUEST, "withDecryption").into_response();
            }
            match q.get("name").map(String::as_str) {
                Some("/paybridge/acme/unzer key") => Json(json!({
                    "Parameter": {"Name": "/paybridge/acme/unzer key", "Type": "SecureString",
                                  "Value": "s-priv-from-ssm", "Version": 3},
                    "ResultMetadata": {}
                }))
                .into_response(),
                Some("/paybridge/flaky") => {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
                }
                _ => (StatusCode::BAD_REQUEST, "ParameterNotFound").into_response(),
            }
        }
        async fn secrets(h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
            if !authorized(&h) {
                return (StatusCode::UNAUTHORIZED, "missing token").into_response();
            }
            match q.get("secretId").map(String::as_str) {
                Some("paybridge/smtp") => Json(json!({
                    "ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:paybridge/smtp-AbCdEf",
                    "Name": "paybridge/smtp", "SecretString": "smtp-pass-from-sm",
                    "VersionId": "v1", "VersionStages": ["AWSCURRENT"]
                }))
                .into_response(),
                Some("paybridge/binary") => Json(json!({
                    "Name": "paybridge/binary",
                    "SecretBinary": base64::engine::general_purpose::STANDARD.encode("bin-secret")
                }))
                .into_response(),
                _ => (StatusCode::BAD_REQUEST, "ResourceNotFoundException").into_response(),
            }
        }
        let router = axum::Router::new()
            .route("/systemsmanager/parameters/get", get(ssm))
            .route("/secretsmanager/get", get(secrets));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Url::parse(&format!("http://{addr}/")).expect("url")
    }

    async fn extension() -> SecretsExtension {
        SecretsExtension::new(fake_extension().await, Some(Secret::new(TOKEN))).expect("client")
    }

    #[tokio::test]
    async fn extension_reads_ssm_parameters_and_secrets() {
        let ext = extension().await;
        let p = ext
            .ssm_parameter("/paybridge/acme/unzer key")
            .await
            .expect("ssm");
        assert_eq!(p.expose(), "s-priv-from-ssm");
        let s = ext.secret_value("paybridge/smtp").await.expect("secret");
        assert_eq!(s.expose(), "smtp-pass-from-sm");
        let b = ext.secret_value("paybridge/binary").await.expect("binary");
        assert_eq!(b.expose(), "bin-secret");
    }

    #[tokio::test]
    async fn extension_errors_name_the_status_and_need_the_token() {
        let ext = extension().await;
        let e = ext.ssm_parameter("/paybridge/missing").await.unwrap_err();
        assert!(
            e.contains("HTTP 400") && e.contains("ParameterNotFound"),
            "{e}"
        );
        let e = ext.ssm_parameter("/paybridge/flaky").await.unwrap_err();
        assert!(e.contains("HTTP 503"), "retried, then reported: {e}");

        let no_token = SecretsExtension::new(fake_extension().await, None).expect("client");
        let e = no_token.secret_value("paybridge/smtp").await.unwrap_err();
        assert!(e.contains("HTTP 401"), "{e}");
        assert!(!format!("{no_token:?}").contains(TOKEN));
        assert!(
            !format!("{ext:?}").contains(TOKEN),
            "the token is not printed"
        );
    }

    #[tokio::test]
    async fn unreachable_extension_is_an_error_not_a_hang() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let ext = SecretsExtension::new(
            Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url"),
            Some(Secret::new(TOKEN)),
        )
        .expect("client");
        let e = ext.ssm_parameter("/x").await.unwrap_err();
        assert!(e.contains("not reachable"), "{e}");
    }

    const AWS_CONFIG: &str = r#"
[tenant]
id = "acme"
quiet_hours = "off"

[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-1"
private_key = "ssm:/paybridge/acme/unzer key"

[[method]]
erp = "main"
mandant = "02"
erp_method = "CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-2"
private_key = "ssm:/paybridge/acme/unzer key"

[[method]]
erp = "main"
mandant = "03"
erp_method = "CARD"
psp = "unzer"
active = false
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-3"
private_key = "ssm:/paybridge/not-there"

[smtp]
host = "smtp.example.com"
port = 587
user = "paybridge"
password = "secretsmanager:paybridge/smtp"
from = "paybridge@example.com"
to = "ops@example.com"
"#;

    #[tokio::test]
    async fn config_secrets_are_resolved_into_a_copy() {
        let config = Config::parse(AWS_CONFIG, "aws.toml").expect("config");
        assert!(needs_extension(&config));
        let ext = extension().await;
        let resolved = resolve_config_secrets(&config, Path::new("/var/task"), &ext)
            .await
            .expect("resolved");
        let key = |i: usize| match &resolved.methods[i].account.private_key {
            SecretRef::Plain(s) => s.expose().to_string(),
            other => panic!("not resolved: {other:?}"),
        };
        assert_eq!(key(0), "s-priv-from-ssm");
        assert_eq!(key(1), "s-priv-from-ssm");
        assert_eq!(
            resolved.methods[2].account.private_key,
            SecretRef::Ssm("/paybridge/not-there".into()),
            "inactive configs are left alone"
        );
        match resolved.smtp.as_ref().and_then(|s| s.password.as_ref()) {
            Some(SecretRef::Plain(s)) => assert_eq!(s.expose(), "smtp-pass-from-sm"),
            other => panic!("smtp password not resolved: {other:?}"),
        }
        assert!(!needs_extension(&resolved));
        let printed = format!("{resolved:?}");
        assert!(
            !printed.contains("s-priv-from-ssm") && !printed.contains("smtp-pass"),
            "{printed}"
        );
        // The original keeps its references.
        assert_eq!(
            config.methods[0].account.private_key,
            SecretRef::Ssm("/paybridge/acme/unzer key".into())
        );
    }

    #[tokio::test]
    async fn a_missing_secret_names_its_use_and_reference() {
        let text = AWS_CONFIG.replace("/paybridge/acme/unzer key", "/paybridge/gone");
        let config = Config::parse(&text, "aws.toml").expect("config");
        let e = resolve_config_secrets(&config, Path::new("/"), &extension().await)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("method main/01/CARD private_key"), "{e}");
        assert!(e.contains("ssm:/paybridge/gone"), "{e}");
        assert!(e.contains("HTTP 400"), "{e}");
    }

    #[tokio::test]
    async fn local_references_need_no_extension_and_files_are_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("key.txt"), "s-priv-from-file\n").expect("write");
        let text = AWS_CONFIG
            .replace("\"ssm:/paybridge/acme/unzer key\"", "\"file:key.txt\"")
            .replace("\"secretsmanager:paybridge/smtp\"", "\"plain:pw\"");
        let config = Config::parse(&text, "aws.toml").expect("config");
        assert!(
            !needs_extension(&config),
            "only the inactive config uses ssm:"
        );
        // An extension nobody listens on: it must not be asked.
        let ext = SecretsExtension::new(Url::parse("http://127.0.0.1:9/").expect("url"), None)
            .expect("client");
        let resolved = resolve_config_secrets(&config, dir.path(), &ext)
            .await
            .expect("resolved");
        assert_eq!(
            resolved.methods[0].account.private_key,
            SecretRef::Plain(Secret::new("s-priv-from-file"))
        );
    }

    #[test]
    fn environment_names_what_is_missing() {
        let full = |name: &str| match name {
            ENV_CONFIG => Some("/var/task/paybridge.toml".to_string()),
            ENV_TABLE => Some("paybridge".to_string()),
            ENV_QUEUE_URL => Some("https://sqs.eu-central-1.amazonaws.com/1/jobs".to_string()),
            _ => None,
        };
        let env = AwsEnv::from_lookup(full).expect("env");
        assert_eq!(env.config_path, PathBuf::from("/var/task/paybridge.toml"));
        assert_eq!(env.table, "paybridge");
        let e = AwsEnv::from_lookup(|n| {
            if n == ENV_TABLE {
                Some(" ".into())
            } else {
                full(n)
            }
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PAYBRIDGE_TABLE is not set"
        );
    }

    #[test]
    fn schedule_triggers_are_told_apart() {
        let rule = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "eu-central-1",
            "resources": ["arn:aws:events:eu-central-1:123456789012:rule/poll"], "detail": {}
        });
        match ScheduleTrigger::from_event(&rule) {
            ScheduleTrigger::Rule { id, time } => {
                assert_eq!(id.as_deref(), Some("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"));
                assert_eq!(
                    time.map(|t| t.to_rfc3339()).as_deref(),
                    Some("2026-11-23T10:00:00+00:00")
                );
            }
            other => panic!("{other:?}"),
        }
        let scheduler = json!({
            "source": "paybridge.schedule", "scheduled_time": "2026-11-23T10:05:00Z",
            "execution_id": "exec-1", "attempt": "1"
        });
        assert_eq!(
            ScheduleTrigger::from_event(&scheduler),
            ScheduleTrigger::Scheduler {
                scheduled_time: Some("2026-11-23T10:05:00Z".into()),
                execution_id: Some("exec-1".into()),
                attempt: Some("1".into()),
            }
        );
        assert!(matches!(
            ScheduleTrigger::from_event(&Value::Null),
            ScheduleTrigger::Scheduler {
                scheduled_time: None,
                ..
            }
        ));
    }

    fn sqlite_app() -> App {
        let config = Config::parse(
            &AWS_CONFIG.replace("ssm:/paybridge/acme/unzer key", "plain:k"),
            "t.toml",
        )
        .expect("config");
        let mut erps: HashMap<String, Arc<dyn crate::erp::Erp>> = HashMap::new();
        erps.insert("main".into(), Arc::new(MemoryErp::new()));
        App {
            config: Arc::new(config),
            store: Arc::new(SqliteStore::open_in_memory().expect("store")),
            queue: Arc::new(SqliteQueue::open_in_memory(5).expect("queue")),
            erps,
            psp: Arc::new(MemoryPsp::new()),
            notifier: Arc::new(LogNotifier),
            settings: Settings::default(),
            holder: "test".into(),
        }
    }

    #[tokio::test]
    async fn records_without_id_or_body_fail_the_way_lambda_expects() {
        let app = sqlite_app();
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "no-body", "receiptHandle": "r1", "attributes": {}, "messageAttributes": {}},
            {"receiptHandle": "r2", "body": "{\"job\":\"nope\"}", "attributes": {}, "messageAttributes": {}},
            {"messageId": "ok", "receiptHandle": "r3", "attributes": {}, "messageAttributes": {},
             "body": "{\"job\":\"evaluate\",\"order_pk\":\"T#acme#O#main#1\"}"}
        ]}))
        .expect("event");
        let response = handle_sqs_batch(&app, event, Utc::now()).await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["no-body", ""], "an empty id fails the whole batch");
    }

    #[tokio::test]
    async fn a_poll_is_a_poll_cycle() {
        let app = sqlite_app();
        let report = handle_schedule(&app, Utc::now()).await.expect("poll");
        assert_eq!(report, PollReport::default());
    }
}
