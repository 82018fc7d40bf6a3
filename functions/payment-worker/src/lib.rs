//! `payment-worker`: the Lambda function behind the SQS job queue. Each invocation gets a batch
//! of job messages and answers which of them failed (`ReportBatchItemFailures` must be enabled
//! on the event source mapping, see infra/template.yaml); everything else is
//! [`paybridge_core::aws::handle_sqs_batch`]: parse each body as a job, run it with
//! `App::run_job`, report unparsable bodies, unfinished jobs and errors as failures so SQS
//! delivers them again (and moves poison messages to the dead-letter queue).
//!
//! [`handler`] is a plain async function: tests call it with a `LambdaEvent` and a default
//! `Context`; `main` builds logging and the app once per execution environment.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use lambda_runtime::{Error, LambdaEvent};
use paybridge_core::app::App;

/// One SQS batch → the partial batch response.
pub async fn handler(app: &App, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    Ok(paybridge_core::aws::handle_sqs_batch(app, event.payload, Utc::now()).await)
}
