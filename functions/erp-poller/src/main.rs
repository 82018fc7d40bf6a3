//! `erp-poller` entry point: JSON logging and the app (configuration, DynamoDB and SQS clients,
//! connectors) once per execution environment, then one [`erp_poller::handler`] call per
//! schedule tick.

use anyhow::Context as _;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use paybridge_core::aws::{LazyApp, init_tracing};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let lazy = LazyApp::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))
        .context("erp-poller: cannot start")?;
    let lazy = &lazy;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let app = lazy.get().await?;
        erp_poller::handler(&app, event).await
    }))
    .await
}
