//! Backend-independent conformance suite for [`Queue`]: the SQLite queue and SQS (or an SQS
//! emulator) must both pass it.
//!
//! Written for a backend with its own clock: `now_ms` is always the real time, and checks that
//! need time to pass really wait (about three seconds in all, the shortest delays SQS accepts).
//! Receives that must find something are retried for a few seconds, because SQS short polling
//! may answer empty while messages are available. Every check leaves the queue empty; the suite
//! expects an empty queue at its start. A failed check panics with a message naming it.
//!
//! Entry points: [`run_all`], and [`run_redrive`] for a queue with a dead-letter redrive.

use super::{Delivery, Job, Queue, QueueError};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Visibility for messages a check handles itself; far longer than any check runs.
const LONG: Duration = Duration::from_secs(30);
/// The shortest non-zero visibility timeout and send delay SQS supports.
const SHORT: Duration = Duration::from_secs(1);
/// How long to wait for a `SHORT` timer, with slack for coarse server clocks.
const SHORT_WAIT: Duration = Duration::from_millis(1_500);
/// How long a receive that must find something keeps retrying.
const PATIENCE: Duration = Duration::from_secs(5);
/// SQS returns at most ten messages per receive.
const BATCH: usize = 10;

/// What a backend can promise beyond the basic contract.
#[derive(Debug, Clone, Copy)]
pub struct QueueCaps {
    /// An outdated receipt (of a message received again since) is refused. SQLite: yes. SQS:
    /// no — "the request will succeed, but the message might not be deleted" (SQS API
    /// reference, DeleteMessage), so paybridge never relies on it: every job is idempotent.
    pub rejects_stale_receipts: bool,
}

/// Runs every check of the basic contract on an empty queue, with every capability.
pub async fn run_all(queue: &dyn Queue) {
    run_all_with(
        queue,
        QueueCaps {
            rejects_stale_receipts: true,
        },
    )
    .await;
}

/// Runs every check of the basic contract on an empty queue; checks of capabilities the
/// backend does not have are left out.
pub async fn run_all_with(queue: &dyn Queue, caps: QueueCaps) {
    check_empty(queue).await;
    check_round_trip(queue).await;
    check_receive_max(queue).await;
    check_retry_later(queue).await;
    check_visibility_timeout_with(queue, caps).await;
    check_delayed_send(queue).await;
}

/// On a queue whose messages are dead-lettered after `max_receives` receives: a message received
/// that often without ack is not delivered again and leaves the queue. Returns the job, so the
/// caller can look for it in its backend's dead-letter store.
pub async fn run_redrive(queue: &dyn Queue, max_receives: u32) -> Job {
    assert!(
        max_receives >= 1,
        "run_redrive: max_receives must be at least 1"
    );
    let job = unique_job("redrive");
    ok(
        queue.send(&job, Duration::ZERO, now_ms()).await,
        "redrive: send",
    );
    let mut message_id = None;
    for attempt in 1..=max_receives {
        let d = receive_one(queue, LONG, "redrive: receive").await;
        assert_eq!(d.job, job, "redrive: job intact on receive {attempt}");
        assert_eq!(
            d.receive_count, attempt,
            "redrive: receive_count counts every receive"
        );
        match &message_id {
            None => message_id = Some(d.message_id.clone()),
            Some(id) => assert_eq!(&d.message_id, id, "redrive: message id is stable"),
        }
        // Hand it back at once instead of waiting for the visibility timeout.
        ok(
            queue
                .retry_later(&d.receipt, Duration::ZERO, now_ms())
                .await,
            "redrive: retry_later(0)",
        );
    }
    for _ in 0..3 {
        let got = ok(
            queue.receive(BATCH, LONG, now_ms()).await,
            "redrive: receive after max",
        );
        assert!(
            got.iter().all(|d| d.job != job),
            "redrive: a message received {max_receives} times was delivered again: {got:?}"
        );
        assert!(got.is_empty(), "redrive: unexpected messages {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_depth(
        queue,
        0,
        "redrive: the dead-lettered message left the queue",
    )
    .await;
    job
}

// ---------------------------------------------------------------------------------------------
// helpers

/// Unix milliseconds from the real clock.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A tag no other check (of this or any other run) uses.
fn unique(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conformance#{check}#{nanos:x}-{:x}-{n}", std::process::id())
}

fn unique_job(check: &str) -> Job {
    Job::Evaluate {
        order_pk: unique(check),
    }
}

fn ok<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

fn assert_stale<T: std::fmt::Debug>(result: Result<T, QueueError>, what: &str) {
    match result {
        Err(QueueError::StaleReceipt) => {}
        other => panic!("{what}: expected StaleReceipt, got {other:?}"),
    }
}

async fn assert_depth(queue: &dyn Queue, expected: usize, what: &str) {
    assert_eq!(ok(queue.depth().await, what), expected, "{what}: depth");
}

/// Receives until `want` messages arrived (never more per call than asked for), hiding each for
/// `visibility`; panics if they do not within [`PATIENCE`].
async fn receive_n(
    queue: &dyn Queue,
    want: usize,
    visibility: Duration,
    what: &str,
) -> Vec<Delivery> {
    let started = Instant::now();
    let mut got: Vec<Delivery> = Vec::new();
    while got.len() < want {
        let max = (want - got.len()).min(BATCH);
        let batch = ok(queue.receive(max, visibility, now_ms()).await, what);
        assert!(
            batch.len() <= max,
            "{what}: asked for at most {max}, got {}",
            batch.len()
        );
        if batch.is_empty() {
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: only {} of {want} messages arrived within {PATIENCE:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        got.extend(batch);
    }
    got
}

async fn receive_one(queue: &dyn Queue, visibility: Duration, what: &str) -> Delivery {
    let mut got = receive_n(queue, 1, visibility, what).await;
    got.pop()
        .unwrap_or_else(|| panic!("{what}: receive_n returned nothing"))
}

/// Asserts that nothing is receivable right now.
async fn assert_nothing(queue: &dyn Queue, what: &str) {
    let got = ok(queue.receive(BATCH, LONG, now_ms()).await, what);
    assert!(got.is_empty(), "{what}: expected no message, got {got:?}");
}

// ---------------------------------------------------------------------------------------------
// checks

/// The fresh queue is empty.
pub async fn check_empty(queue: &dyn Queue) {
    assert_depth(queue, 0, "fresh queue").await;
    assert_nothing(queue, "receive on a fresh queue").await;
}

/// Jobs of every kind come back intact, once each, with count 1 and distinct ids and receipts;
/// received messages count in `depth` until acked.
pub async fn check_round_trip(queue: &dyn Queue) {
    let tag = unique("round-trip");
    let jobs = vec![
        Job::RunOp {
            order_pk: format!("{tag}#ORDER#Zürich-東京"),
            op_id: "op#1_%\"quoted\"".to_owned(),
        },
        Job::Evaluate {
            order_pk: format!("{tag}#ORDER#2"),
        },
        Job::ApplyEvent {
            event_pk: format!("{tag}#PAY#3"),
            event_sk: "EV#memory#ß".to_owned(),
        },
    ];
    for job in &jobs {
        ok(
            queue.send(job, Duration::ZERO, now_ms()).await,
            "round trip: send",
        );
    }
    assert_depth(queue, jobs.len(), "round trip: after send").await;

    let got = receive_n(queue, jobs.len(), LONG, "round trip: receive").await;
    for job in &jobs {
        let n = got.iter().filter(|d| &d.job == job).count();
        assert_eq!(n, 1, "round trip: {job:?} delivered {n} times");
    }
    for d in &got {
        assert_eq!(d.receive_count, 1, "round trip: first receive counts 1");
        assert!(!d.receipt.is_empty(), "round trip: receipt present");
        assert!(!d.message_id.is_empty(), "round trip: message id present");
    }
    for (i, a) in got.iter().enumerate() {
        for b in &got[i + 1..] {
            assert_ne!(
                a.message_id, b.message_id,
                "round trip: message ids distinct"
            );
            assert_ne!(a.receipt, b.receipt, "round trip: receipts distinct");
        }
    }
    assert_nothing(queue, "round trip: in-flight messages are hidden").await;
    assert_depth(queue, jobs.len(), "round trip: in-flight messages count").await;

    for (acked, d) in got.iter().enumerate() {
        ok(queue.ack(&d.receipt).await, "round trip: ack");
        assert_depth(queue, jobs.len() - acked - 1, "round trip: after ack").await;
    }
    assert_nothing(queue, "round trip: acked messages are gone").await;
}

/// `receive` never returns more than `max`.
pub async fn check_receive_max(queue: &dyn Queue) {
    let jobs: Vec<Job> = (0..3).map(|_| unique_job("receive-max")).collect();
    for job in &jobs {
        ok(
            queue.send(job, Duration::ZERO, now_ms()).await,
            "receive max: send",
        );
    }
    let first = receive_n(queue, 1, LONG, "receive max: receive(1)").await;
    assert_eq!(first.len(), 1);
    let rest = receive_n(queue, 2, LONG, "receive max: receive rest").await;
    let all: Vec<&Delivery> = first.iter().chain(&rest).collect();
    for job in &jobs {
        assert_eq!(
            all.iter().filter(|d| &d.job == job).count(),
            1,
            "receive max: {job:?} delivered exactly once"
        );
    }
    for d in all {
        ok(queue.ack(&d.receipt).await, "receive max: ack");
    }
    assert_depth(queue, 0, "receive max: after acks").await;
}

/// `retry_later(0)` makes a message visible again at once, as a new receive with count 2;
/// `retry_later` with a delay keeps it hidden, and its receipt stays valid for `ack`.
pub async fn check_retry_later(queue: &dyn Queue) {
    let job = unique_job("retry-later");
    ok(
        queue.send(&job, Duration::ZERO, now_ms()).await,
        "retry later: send",
    );
    let first = receive_one(queue, LONG, "retry later: first receive").await;
    assert_nothing(queue, "retry later: hidden after receive").await;

    ok(
        queue
            .retry_later(&first.receipt, Duration::ZERO, now_ms())
            .await,
        "retry later: retry_later(0)",
    );
    let second = receive_one(queue, LONG, "retry later: receive after retry_later(0)").await;
    assert_eq!(second.job, job, "retry later: job intact");
    assert_eq!(
        second.message_id, first.message_id,
        "retry later: same message"
    );
    assert_eq!(
        second.receive_count, 2,
        "retry later: second receive counts 2"
    );
    assert_ne!(second.receipt, first.receipt, "retry later: new receipt");

    ok(
        queue.retry_later(&second.receipt, LONG, now_ms()).await,
        "retry later: retry_later(30 s)",
    );
    assert_nothing(queue, "retry later: hidden by a long retry_later").await;
    assert_depth(queue, 1, "retry later: still queued").await;
    ok(
        queue.ack(&second.receipt).await,
        "retry later: ack after retry_later",
    );
    assert_depth(queue, 0, "retry later: after ack").await;
}

/// A received message is hidden until its visibility timeout ends, then delivered again with
/// count 2 and a new receipt; the old receipt is then rejected by `ack` and `retry_later`.
pub async fn check_visibility_timeout(queue: &dyn Queue) {
    check_visibility_timeout_with(
        queue,
        QueueCaps {
            rejects_stale_receipts: true,
        },
    )
    .await;
}

/// [`check_visibility_timeout`]; the stale-receipt part only where the backend promises it.
pub async fn check_visibility_timeout_with(queue: &dyn Queue, caps: QueueCaps) {
    let job = unique_job("visibility");
    ok(
        queue.send(&job, Duration::ZERO, now_ms()).await,
        "visibility: send",
    );
    let first = receive_one(queue, SHORT, "visibility: first receive").await;
    assert_eq!(first.receive_count, 1);
    assert_nothing(queue, "visibility: hidden during the timeout").await;

    tokio::time::sleep(SHORT_WAIT).await;
    let second = receive_one(queue, LONG, "visibility: receive after the timeout").await;
    assert_eq!(second.job, job, "visibility: job intact");
    assert_eq!(
        second.message_id, first.message_id,
        "visibility: same message"
    );
    assert_eq!(second.receive_count, 2, "visibility: redelivery counts 2");
    assert_ne!(
        second.receipt, first.receipt,
        "visibility: redelivery has a new receipt"
    );

    if caps.rejects_stale_receipts {
        assert_stale(
            queue.ack(&first.receipt).await,
            "visibility: ack with the old receipt",
        );
        assert_stale(
            queue
                .retry_later(&first.receipt, Duration::ZERO, now_ms())
                .await,
            "visibility: retry_later with the old receipt",
        );
        assert_depth(queue, 1, "visibility: a stale ack deletes nothing").await;
        assert_nothing(queue, "visibility: a stale retry_later shows nothing").await;
    }

    ok(
        queue.ack(&second.receipt).await,
        "visibility: ack with the current receipt",
    );
    assert_depth(queue, 0, "visibility: after ack").await;
}

/// A message sent with a delay is invisible (but counted) until the delay has passed; one sent
/// without delay at the same time is receivable at once.
pub async fn check_delayed_send(queue: &dyn Queue) {
    let delayed = unique_job("delayed");
    let immediate = unique_job("immediate");
    ok(
        queue.send(&delayed, SHORT, now_ms()).await,
        "delayed send: send delayed",
    );
    ok(
        queue.send(&immediate, Duration::ZERO, now_ms()).await,
        "delayed send: send immediate",
    );
    assert_depth(queue, 2, "delayed send: delayed messages count").await;

    let first = receive_one(queue, LONG, "delayed send: immediate message").await;
    assert_eq!(
        first.job, immediate,
        "delayed send: only the undelayed message is visible"
    );
    assert_nothing(queue, "delayed send: hidden during the delay").await;
    ok(
        queue.ack(&first.receipt).await,
        "delayed send: ack immediate",
    );

    tokio::time::sleep(SHORT_WAIT).await;
    let later = receive_one(queue, LONG, "delayed send: after the delay").await;
    assert_eq!(later.job, delayed, "delayed send: job intact");
    assert_eq!(
        later.receive_count, 1,
        "delayed send: a delay is not a receive"
    );
    ok(queue.ack(&later.receipt).await, "delayed send: ack delayed");
    assert_depth(queue, 0, "delayed send: after acks").await;
}
