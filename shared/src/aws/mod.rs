//! AWS entry-point support: what the three Lambda functions (`unzer-webhook`, `erp-poller`,
//! `payment-worker`) share, so each of their handlers is "parse the event, call one function
//! here or in [`crate::app`], shape the answer".
//!
//! | item | what it is for |
//! |---|---|
//! | [`init_tracing`] | JSON logs on stdout, level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` |
//! | [`AwsEnv`] | the function's environment: `PAYBRIDGE_CONFIG`, `PAYBRIDGE_TABLE`, `PAYBRIDGE_QUEUE_URL` |
//! | [`Backends`] | configuration, DynamoDB store, SQS queue: built once, in the INIT phase |
//! | [`warm_up`], [`WarmUp`] | the one cheap DynamoDB read of INIT that opens the connection (never fails the INIT) |
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
use crate::config::{Config, ConfigError, PspKind, Secret, SecretRef};
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

mod backends;
mod schedule;
mod secrets;
mod sqs_batch;

pub use backends::*;
pub use schedule::*;
pub use secrets::*;
pub use sqs_batch::*;

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

#[cfg(test)]
mod tests;
