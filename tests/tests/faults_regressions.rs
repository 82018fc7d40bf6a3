//! The fault-injection simulation (`src/bin/faults/`) as tests: a few hundred lifecycles per run,
//! determinism across thread counts, and one regression test per product bug the harness found,
//! named `seed_<S>_<index>` after the lifecycle that showed it (each failed before its fix).
//!
//! Each test runs the `faults` binary (built by cargo for this test target) and reads its last
//! line, `lifecycles=N double=D lost=L unreconciled=U`. A lifecycle is drawn from `(seed, index)`
//! by the harness's own scenario and fault streams: changing how the harness draws (new fault
//! kinds, other rates, other history steps) changes what a seed means, so the seed-named tests
//! must be re-pinned to an index showing the same bug (check out the fix's parent to find it).
//!
//! A failing lifecycle replays with
//! `cargo run --release -p paybridge-testkit --bin faults -- --seed S --only INDEX`.

use std::process::Command;

struct Run {
    stdout: String,
    stderr: String,
    ok: bool,
}

fn faults(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_faults"))
        .args(args)
        .output()
        .expect("run the faults binary");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

/// Replays one lifecycle and asserts it is clean.
fn assert_clean(seed: u64, index: u64) {
    assert_clean_with(seed, index, &[]);
}

/// Replays one lifecycle with `--hazards` (faults outside the stated assumptions) and asserts it
/// is clean.
fn assert_clean_with_hazards(seed: u64, index: u64) {
    assert_clean_with(seed, index, &["--hazards"]);
}

fn assert_clean_with(seed: u64, index: u64, extra: &[&str]) {
    let (seed, index) = (seed.to_string(), index.to_string());
    let mut args = vec!["--seed", &seed, "--only", &index];
    args.extend_from_slice(extra);
    let r = faults(&args);
    assert_eq!(
        last_line(&r.stdout),
        "lifecycles=1 double=0 lost=0 unreconciled=0",
        "{}",
        r.stdout
    );
    assert!(r.ok);
}

/// 300 lifecycles of seed 1, all clean.
#[test]
fn lifecycles_300_seed_1() {
    let r = faults(&["--lifecycles", "300", "--seed", "1", "--threads", "2"]);
    assert_eq!(
        last_line(&r.stdout),
        "lifecycles=300 double=0 lost=0 unreconciled=0",
        "{}",
        r.stdout
    );
    assert!(r.ok);
}

/// Results do not depend on the number of threads (nor on anything but the seed).
#[test]
fn results_do_not_depend_on_threads() {
    let one = faults(&["--lifecycles", "40", "--seed", "7", "--threads", "1"]);
    let two = faults(&["--lifecycles", "40", "--seed", "7", "--threads", "2"]);
    assert_eq!(one.stdout, two.stdout);
    assert!(one.stdout.contains("digest="), "{}", one.stdout);
}

/// A lifecycle replays alone, identically, with `--only`.
#[test]
fn a_lifecycle_replays_exactly() {
    let a = faults(&["--seed", "1", "--only", "30"]);
    let b = faults(&["--seed", "1", "--only", "30"]);
    assert_eq!(a.stdout, b.stdout);
    assert!(a.stdout.contains("replay: cargo run"), "{}", a.stdout);
}

/// Bug A (shared/src/app/mod.rs, `App::evaluate`, with `App::poll_connection`): expert-mode
/// card order; the poll that reads CLOSED cannot fetch the PSP payment (503). `evaluate` logs
/// it, decides without a PSP view (only the hint `psp_unavailable`), returns Ok, and the
/// watermark advances; the ERP lists changed orders only, so nothing evaluates the order again:
/// the payment is never closed (ClosePayment) and the later credit note never refunded (its poll
/// hits the same 503). Fixed: `evaluate` queues a delayed `Job::Evaluate` when the PSP cannot be
/// read (`Settings::psp_recheck`).
#[test]
fn seed_1_30() {
    assert_clean(1, 30);
}

/// Bugs B and A, Paylater invoice: after the capture of R1 is saved Done, its follow-up
/// `evaluate` (which would plan the reversal of the cancelled line L2, due once anything is
/// charged) dies at its first store read (bug B); the poll that later reads CLOSED cannot read
/// the PSP (bug A). The aggregated reversal (CancelLines) is never planned. Fixed with A and B.
#[test]
fn seed_1_214() {
    assert_clean(1, 214);
}

/// Bug A, standard mode: the poll that reads CLOSED cannot read the PSP; the refunds of the
/// cancelled (NLB) lines are never planned. The same lifecycle also shows the other call site:
/// the follow-up `evaluate` after the capture cannot read the PSP either (the release is only
/// planned because a later ERP edit triggers a poll). Fixed with A.
#[test]
fn seed_1_296() {
    assert_clean(1, 296);
}

/// Bug B (shared/src/app/mod.rs, `App::run_op`): the PSP declines ClosePayment; `run_op` saves
/// the operation Failed, then its follow-up `evaluate` (which would raise the `op_failed` error
/// flag and e-mail) dies at its first store read. The job is redelivered, `run_op` sees a
/// terminal operation and returns Done: the failure is never flagged, nobody is told. Fixed:
/// `run_op` evaluates the order again when it finds its operation already terminal.
#[test]
fn seed_42_459() {
    assert_clean(42, 459);
}

/// Bug C (shared/src/engine/mod.rs, `Cx::invoices`, prepayment branch): the PSP payment is
/// 419.80 EUR for a 421.24 EUR order (released with lock + amount-mismatch error); the customer
/// transfers the 419.80 EUR due, the order ships and is CLOSED, and the invoice is booked for
/// 421.24 EUR: the ERP shows 1.44 EUR more received than arrived. Fixed: invoices above the money
/// received are flagged (`invoices_exceed_received`), not booked.
#[test]
fn seed_42_2875() {
    assert_clean(42, 2875);
}

/// Bug D (shared/src/app/mod.rs, `App::evaluate`): the order record with a new error flag is saved
/// before the operator is notified; the poller dies in between, later evaluations see the flag
/// as known and never send the e-mail (behaviour.md §4: process errors send an e-mail). Not a
/// money violation, so it shows as an `info:` line, asserted absent here. Fixed: the record keeps
/// which errors were told (`OrderRecord::notified`), saved after the e-mail.
#[test]
fn seed_1_0() {
    let r = faults(&["--seed", "1", "--only", "0"]);
    assert!(!r.stdout.contains("was never e-mailed"), "{}", r.stdout);
}

/// The same simulation with the store in DynamoDB (`DynamoStore` on moto, one table per
/// lifecycle; the queue stays SQLite, see the binary's `--store` help); two threads only to
/// overlap moto's round trips. Needs
/// `PAYBRIDGE_TEST_AWS_ENDPOINT` (e.g. `http://127.0.0.1:5055` with `moto_server -p 5055`
/// running); without it the test prints a notice and passes, except under CI (`CI=true`), where
/// it fails, like `shared/tests/aws_moto.rs`.
#[test]
fn dynamo_lifecycles_seed_3() {
    const ENDPOINT_VAR: &str = "PAYBRIDGE_TEST_AWS_ENDPOINT";
    let endpoint = match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(
                !ci,
                "dynamo_lifecycles_seed_3: {ENDPOINT_VAR} is not set, and under CI the moto tests \
                 must run: start `moto_server -H 127.0.0.1 -p 5055` and set \
                 {ENDPOINT_VAR}=http://127.0.0.1:5055"
            );
            eprintln!(
                "notice: dynamo_lifecycles_seed_3 skipped: set {ENDPOINT_VAR} (e.g. \
                 http://127.0.0.1:5055, with `moto_server -H 127.0.0.1 -p 5055` running) to run \
                 the fault simulation on DynamoDB"
            );
            return;
        }
    };
    let r = faults(&[
        "--store",
        "dynamodb",
        "--aws-endpoint",
        &endpoint,
        "--lifecycles",
        "30",
        "--seed",
        "3",
        "--threads",
        "2",
    ]);
    assert_eq!(
        last_line(&r.stdout),
        "lifecycles=30 double=0 lost=0 unreconciled=0",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.ok);
}

/// Finding E (`--hazards`; shared/src/app/mod.rs, `App::steps`, PSP reconciliation): a line
/// reversal (Refund, reason Cancel) times out and the PSP applies it later; the reconciliation
/// 10-20 s later did not find it yet and sent it again: 2.55 EUR refunded twice. Fixed: a call
/// whose outcome is unknown is re-sent only `Settings::psp_settle` (10 min) after the send.
#[test]
fn seed_1_50_hazards() {
    assert_clean_with_hazards(1, 50);
}

/// Finding E, Paylater invoice: the refund of credit note G1 (546.92 EUR) times out, the PSP
/// applies it late, paybridge had already sent it again: refunded twice. Fixed like
/// `seed_1_50_hazards`.
#[test]
fn seed_1_264_hazards() {
    assert_clean_with_hazards(1, 264);
}

// Found by the 100,000-lifecycle run of seed 42 on 2026-12-01 (at 1eea23c); not fixed yet. Each
// replays in under a second: `cargo run -p paybridge-testkit --bin faults -- --seed 42 --only I`.

/// Finding F (shared/src/app/mod.rs, `App::run_op` giving up, with `App::steps`): card, expert
/// mode, heavy faults. The capture of R3 meets PSP timeouts, 503s and `psp_settle` waits; the
/// waits count as attempts, and after 12 the operation is failed while its last send's outcome
/// is still unknown (the final PSP fetch answered 503). The PSP had applied it: 127.51 EUR
/// captured, no booking in the ERP, and the operator's e-mail says the capture failed.
#[test]
#[ignore = "finding F: an operation gives up while its PSP call's outcome is unknown (money moved, not booked)"]
fn seed_42_82099() {
    assert_clean(42, 82099);
}

/// Finding G (shared/src/app/mod.rs, `App::accept_webhook`): prepayment (JPY) with a credit note
/// waiting for the money. The customer pays in two parts; the second `payment.partly` webhook
/// has the same body as the first, its event identity (a hash of the body's fields) matches, it
/// is acknowledged as a duplicate and nothing re-evaluates the order: the refund is never planned.
#[test]
#[ignore = "finding G: a repeated payment.partly webhook is taken for a duplicate; the due refund is never planned"]
fn seed_42_940() {
    assert_clean(42, 940);
}

/// Finding G, the same shape in expert mode (prepayment, JPY).
#[test]
#[ignore = "finding G (probably; not traced yet): a credit note's refund is never planned"]
fn seed_42_66532() {
    assert_clean(42, 66532);
}

/// Finding G, invoice secured (KWD).
#[test]
#[ignore = "finding G (probably; not traced yet): a credit note's refund is never planned"]
fn seed_42_66542() {
    assert_clean(42, 66542);
}

/// Finding H: card, standard mode, queue dead-lettering after 3 receives: on the final state the
/// engine still plans the release of the order; nothing ran it. Not analysed yet.
#[test]
#[ignore = "finding H: an order's release is never run (not analysed yet)"]
fn seed_42_83398() {
    assert_clean(42, 83398);
}
