//! The payment worker's event: one SQS batch → jobs → partial batch failures.

use super::*;

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
