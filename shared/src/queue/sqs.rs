//! The AWS [`Queue`] backend: one SQS standard queue with a dead-letter queue behind it
//! (RedrivePolicy), the same contract as the SQLite queue (both run [`super::conformance`]).
//!
//! Mapping: `send` → SendMessage (body = the job as JSON), `receive` → ReceiveMessage (with
//! `ApproximateReceiveCount`), `ack` → DeleteMessage, `retry_later` → ChangeMessageVisibility,
//! `depth` → GetQueueAttributes (visible + in flight + delayed). SQS keeps its own clock, so the
//! `now_ms` arguments are ignored. In Lambda the payment worker gets its messages from the SQS
//! event source instead of `receive`; the other calls are the same.
//!
//! Where SQS differs from the embedded queue, and what this backend does about it:
//! - **Delays are whole seconds with limits.** Sub-second delays and visibilities are rounded up
//!   (a message never shows up early because of rounding). `send` delays are capped at 900 s
//!   (SQS's maximum `DelaySeconds`): a job sent with a longer delay arrives after 900 s, and the
//!   consumer re-delays it — jobs only name what to look at, and the worker finds in the store
//!   that the operation is not due yet and calls `retry_later` again. `retry_later` is capped at
//!   43,200 s (12 h); SQS also refuses a visibility that ends more than 12 h after the message
//!   was received, which surfaces as `Backend` (the message then simply comes back when its
//!   current visibility ends).
//! - **Bad bodies are left for redrive.** A message whose body is not a [`Job`] is skipped
//!   (logged without its content) and not deleted: it comes back after the visibility timeout
//!   and ends in the dead-letter queue after `maxReceiveCount` receives, where a human can look.
//! - **Stale receipts.** `ReceiptHandleIsInvalid`, `MessageNotInflight` and an invalid receipt
//!   handle parameter map to [`QueueError::StaleReceipt`]. SQS itself may *accept* an outdated
//!   receipt of a message that was received again since: the SQS API reference says such a
//!   DeleteMessage "will succeed, but the message might not be deleted"; moto deletes it. No SQS
//!   API tells whether a receipt is the latest, so this backend cannot report that case.

use super::{Delivery, Job, Queue, QueueError};
use crate::store::dynamo::describe_sdk_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use std::time::Duration;

/// SQS's maximum `DelaySeconds` for SendMessage.
pub const MAX_SEND_DELAY_SECS: u64 = 900;
/// SQS's maximum visibility timeout.
pub const MAX_VISIBILITY_SECS: u64 = 43_200;
/// SQS returns at most ten messages per ReceiveMessage.
const MAX_BATCH: usize = 10;
/// SQS's longest long poll.
const MAX_WAIT_SECS: u64 = 20;
/// Dead letters are kept as long as SQS allows (14 days) so a human has time to look.
const DLQ_RETENTION_SECS: u32 = 1_209_600;

/// SQS implementation of [`Queue`]. Cloning is cheap (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    wait_secs: i32,
}

impl SqsQueue {
    /// A queue on the existing `queue_url`; `receive` short-polls (see [`Self::with_wait_time`]).
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
            wait_secs: 0,
        }
    }

    /// Makes `receive` long-poll for up to `wait` (whole seconds, at most 20): fewer empty
    /// answers on a quiet queue, at the price of a receive that waits when nothing is there.
    pub fn with_wait_time(mut self, wait: Duration) -> SqsQueue {
        self.wait_secs = secs_i32(wait, MAX_WAIT_SECS);
        self
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Creates (or finds, if they exist with the same attributes) the dead-letter queue
    /// `{name}-dlq` and the queue `name`, whose messages move to the dead-letter queue on the
    /// receive after the `max_receives`-th (1 to 1000). Returns the queue and the dead-letter
    /// queue's URL. For tests and local runs; deployed queues come from the SAM template.
    pub async fn create(
        client: &Client,
        name: &str,
        max_receives: u32,
    ) -> Result<(SqsQueue, String), QueueError> {
        if !(1..=1000).contains(&max_receives) {
            return Err(QueueError::Backend(format!(
                "max_receives must be 1 to 1000 (SQS maxReceiveCount), not {max_receives}"
            )));
        }
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECS.to_string(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("CreateQueue", &e))?
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::Backend("SQS CreateQueue returned no URL".to_owned()))?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| {
                QueueError::Backend("SQS GetQueueAttributes returned no QueueArn".to_owned())
            })?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives,
        });
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|e| sdk_error("CreateQueue", &e))?
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::Backend("SQS CreateQueue returned no URL".to_owned()))?;
        Ok((SqsQueue::new(client.clone(), url), dlq_url))
    }
}

/// `d` in whole seconds, rounded up, at most `max`.
fn secs_i32(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    // `max` is one of the SQS limits above, all far below i32::MAX.
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

fn sdk_error<E>(operation: &str, e: &SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    QueueError::Backend(describe_sdk_error("SQS", operation, e))
}

/// Whether a failed DeleteMessage / ChangeMessageVisibility says the receipt is no good (any
/// more), as opposed to a failure of SQS or the connection.
fn is_stale<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let Some(service) = e.as_service_error() else {
        return false;
    };
    match service.code() {
        Some(code) => {
            let code = code.rsplit('.').next().unwrap_or(code);
            matches!(code, "ReceiptHandleIsInvalid" | "MessageNotInflight")
                || (code == "InvalidParameterValue"
                    && service
                        .message()
                        .is_some_and(|m| m.contains("ReceiptHandle")))
        }
        None => false,
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, job: &Job, delay: Duration, _now_ms: i64) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Backend(e.to_string()))?;
        if delay > Duration::from_secs(MAX_SEND_DELAY_SECS) {
            tracing::debug!(
                ?delay,
                "sqs: delay capped at {MAX_SEND_DELAY_SECS} s; the consumer re-delays the job"
            );
        }
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(secs_i32(delay, MAX_SEND_DELAY_SECS))
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", &e))?;
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        _now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let batch = i32::try_from(max.min(MAX_BATCH)).unwrap_or(1);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(batch)
            .visibility_timeout(secs_i32(visibility, MAX_VISIBILITY_SECS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .wait_time_seconds(self.wait_secs)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", &e))?;
        let mut deliveries = Vec::new();
        for message in out.messages() {
            let (Some(receipt), Some(message_id)) =
                (message.receipt_handle(), message.message_id())
            else {
                tracing::warn!("sqs: message without receipt handle or id skipped");
                continue;
            };
            let body = message.body().unwrap_or_default();
            let job: Job = match serde_json::from_str(body) {
                Ok(job) => job,
                Err(e) => {
                    // Not deleted: it returns after the visibility timeout and is redriven to
                    // the dead-letter queue after maxReceiveCount receives.
                    tracing::warn!(
                        message_id,
                        body_bytes = body.len(),
                        error = %e,
                        "sqs: body is not a job; left for redrive"
                    );
                    continue;
                }
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            deliveries.push(Delivery {
                job,
                receipt: receipt.to_owned(),
                receive_count,
                message_id: message_id.to_owned(),
            });
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        if receipt.is_empty() {
            return Err(QueueError::StaleReceipt);
        }
        match self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_stale(&e) => Err(QueueError::StaleReceipt),
            Err(e) => Err(sdk_error("DeleteMessage", &e)),
        }
    }

    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        _now_ms: i64,
    ) -> Result<(), QueueError> {
        if receipt.is_empty() {
            return Err(QueueError::StaleReceipt);
        }
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs_i32(delay, MAX_VISIBILITY_SECS))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_stale(&e) => Err(QueueError::StaleReceipt),
            Err(e) => Err(sdk_error("ChangeMessageVisibility", &e)),
        }
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &e))?;
        let attrs = out.attributes();
        let mut depth = 0usize;
        for name in [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ] {
            let value = attrs.and_then(|a| a.get(&name)).ok_or_else(|| {
                QueueError::Backend(format!("SQS GetQueueAttributes did not return {name}"))
            })?;
            let n: usize = value
                .parse()
                .map_err(|_| QueueError::Backend(format!("SQS {name} is not a count: {value}")))?;
            depth = depth.saturating_add(n);
        }
        Ok(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(secs_i32(Duration::ZERO, 900), 0);
        assert_eq!(secs_i32(Duration::from_millis(1), 900), 1);
        assert_eq!(secs_i32(Duration::from_millis(1_500), 900), 2);
        assert_eq!(secs_i32(Duration::from_secs(3_600), 900), 900);
        assert_eq!(secs_i32(Duration::MAX, MAX_VISIBILITY_SECS), 43_200);
    }
}
