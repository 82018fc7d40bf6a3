//! `paygate-notify` entry point: JSON logging and the app (configuration, DynamoDB and SQS
//! clients, connectors) once per execution environment, then every API Gateway request through
//! the shared router ([`paygate_notify::handler`]).

use anyhow::Context as _;
use lambda_http::{Error, Request, service_fn};
use paybridge_core::aws::{LazyApp, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let lazy = LazyApp::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))
        .context("paygate-notify: cannot start")?;
    let lazy = &lazy;
    lambda_http::run(service_fn(move |request: Request| async move {
        let router = lazy.router().await?;
        Ok::<_, Error>(paygate_notify::handler(router, request).await?)
    }))
    .await
}
