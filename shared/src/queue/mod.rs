//! Work queue: at-least-once delivery of small job references with delayed redelivery, the
//! shape of SQS (send with delay, receive with a visibility timeout, delete, change visibility).
//! The embedded backend is [`sqlite`]; the AWS one is SQS. Consumers must tolerate duplicates
//! and any order: jobs only name what to look at, the store says what is true.

pub mod conformance;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a worker should look at. Small by design (SQS messages, no state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// Run (or resume, or reconcile) one ledger operation.
    RunOp { order_pk: String, op_id: String },
    /// Re-evaluate one order from its stored facts and a fresh PSP view.
    Evaluate { order_pk: String },
    /// Apply one stored PSP event (its item's key).
    ApplyEvent {
        event_pk: String,
        #[serde(default = "legacy_event_sk")]
        event_sk: String,
    },
}

/// The sort key of events stored before they moved into their payment's partition.
fn legacy_event_sk() -> String {
    "EVENT".to_string()
}

impl Job {
    /// The job that applies a stored event.
    pub fn apply_event(pk: String, sk: String) -> Job {
        Job::ApplyEvent {
            event_pk: pk,
            event_sk: sk,
        }
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job: Job,
    /// Handle for ack/retry; valid until the visibility timeout ends.
    pub receipt: String,
    /// How often this message has been received, this time included.
    pub receive_count: u32,
    /// The message id (stable across redeliveries).
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend: {0}")]
    Backend(String),
    #[error("receipt is no longer valid")]
    StaleReceipt,
    #[error("message body is not a job: {0}")]
    BadMessage(String),
}

/// The queue contract. `now` (unix milliseconds) is passed in so the embedded backend runs on a
/// simulated clock; SQS ignores it and uses its own.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues `job`, invisible for `delay`.
    async fn send(&self, job: &Job, delay: Duration, now_ms: i64) -> Result<(), QueueError>;

    /// Up to `max` visible messages, each hidden for `visibility` afterwards.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes a handled message.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Makes the message visible again after `delay` (SQS ChangeMessageVisibility).
    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        now_ms: i64,
    ) -> Result<(), QueueError>;

    /// Messages not yet deleted (visible or in flight); for tests and the dashboard.
    async fn depth(&self) -> Result<usize, QueueError>;

    /// Waits until a message may have become visible, at most `at_most`. The default waits
    /// `at_most`; a queue that sees its own sends (the embedded one) returns as soon as a
    /// message is sent without delay, so a worker is woken by the enqueue.
    async fn wait_for_work(&self, at_most: Duration) {
        tokio::time::sleep(at_most).await;
    }

    /// Inserts `item` into the store this queue shares its database with (conditionally, as
    /// [`crate::store::Store::insert`]) and, only if it was inserted, enqueues `job`, in one
    /// commit. `None` when the backend has no such store (SQS beside DynamoDB): the caller
    /// inserts and sends on its own.
    async fn insert_and_send(
        &self,
        _item: &crate::store::Item,
        _now: i64,
        _job: &Job,
        _now_ms: i64,
    ) -> Option<Result<bool, QueueError>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Job;

    #[test]
    fn an_event_job_from_before_the_payment_partition_names_the_old_sort_key() {
        let job: Job =
            serde_json::from_str(r#"{"job":"apply_event","event_pk":"E#unzer#ab"}"#).unwrap();
        assert_eq!(job, Job::apply_event("E#unzer#ab".into(), "EVENT".into()));
        let now = Job::apply_event("T#t#PAY#p".into(), "EV#unzer#ab".into());
        let back: Job = serde_json::from_str(&serde_json::to_string(&now).unwrap()).unwrap();
        assert_eq!(back, now);
    }
}
