//! `payment-worker` entry point: JSON logging and the app (configuration, DynamoDB and SQS
//! clients, connectors) once per execution environment, then one [`payment_worker::handler`]
//! call per SQS batch.

use anyhow::Context as _;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use paybridge_core::aws::{LazyApp, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let lazy = LazyApp::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))
        .context("payment-worker: cannot start")?;
    let lazy = &lazy;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let app = lazy.get().await?;
        payment_worker::handler(&app, event).await
    }))
    .await
}
