//! The fault-injection simulation (`src/bin/faults/`) as tests: a few hundred lifecycles per run,
//! determinism across thread counts, and one regression test per product bug the harness found,
//! named `seed_<S>_<index>` after the lifecycle that showed it (each failed before its fix).
//!
//! Each test runs the `faults` binary (built by cargo for this test target) and reads its last
//! line, `lifecycles=N double=D lost=L unreconciled=U expiry=E hands_off=H`. A lifecycle is drawn from `(seed, index)`
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
        "lifecycles=1 double=0 lost=0 unreconciled=0 expiry=0 hands_off=0",
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
        "lifecycles=300 double=0 lost=0 unreconciled=0 expiry=0 hands_off=0",
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
        "lifecycles=30 double=0 lost=0 unreconciled=0 expiry=0 hands_off=0",
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

// Found by the 100,000-lifecycle run of seed 42 on 2026-12-01 (at 1eea23c), fixed on 2026-12-02.
// Each replays in under a second: `cargo run -p paybridge-testkit --bin faults -- --seed 42 --only I`.
// Their unit tests in shared/src/app/tests.rs pin the mechanism itself (a replay of a seed runs a
// different sequence of calls once the code changes).

/// Finding F (`App::run_op` giving up, with `App::steps`): card, expert mode, heavy faults. The
/// capture of R3 met PSP timeouts, 503s and `psp_settle` waits; after 12 attempts the operation
/// was failed while its last send's outcome was unknown. The PSP had applied it: 127.51 EUR
/// captured, no booking, and the operator's e-mail said the capture failed. Now the attempt limit
/// applies to sending only (an operation with a call in flight reconciles first) and attempts
/// count per step. Unit tests: `attempts_used_up_with_a_psp_call_in_flight_reconcile_before_giving_up`,
/// `attempts_used_up_gives_up_only_once_the_psp_says_nothing_moved`.
#[test]
fn seed_42_82099() {
    assert_clean(42, 82099);
}

/// Finding G (`App::accept_webhook`): prepayment (JPY) with a credit note waiting for the money.
/// The customer paid in two parts; the second `payment.partly` webhook had the same body as the
/// first, its event identity matched, it was acknowledged as a duplicate and nothing evaluated
/// the order again: the refund was never planned. Now a repeat of an applied event re-arms it
/// (one more evaluation). Unit tests: `a_second_identical_webhook_after_more_money_arrived_is_evaluated`,
/// `an_event_repeated_after_it_was_read_is_not_marked_applied_by_that_reader`.
#[test]
fn seed_42_940() {
    assert_clean(42, 940);
}

/// Finding G again: prepayment (JPY), expert mode, no faults at all; traced at 1eea23c: two
/// partial transfers, one "payment.partly applied".
#[test]
fn seed_42_66532() {
    assert_clean(42, 66532);
}

/// Finding G again: invoice secured (KWD), paid in two parts; traced at 1eea23c.
#[test]
fn seed_42_66542() {
    assert_clean(42, 66542);
}

/// Finding H (`App::run_op`'s follow-up): card, standard mode, dead-lettering after 3 receives.
/// The capture finished on the job's third receive, the process died before the follow-up
/// evaluation, the job was dead-lettered, and the sweep only looked at unfinished operations:
/// the release after the capture never ran. Now a finished operation keeps a follow-up mark
/// (and its place in the sweep's index) until its follow-up evaluation ran. Unit test:
/// `a_follow_up_lost_with_its_job_is_run_by_the_sweep`.
#[test]
fn seed_42_83398() {
    assert_clean(42, 83398);
}

// Found on 2026-12-04 by the harness's new draws (authorization ages, hands-off switches) in
// `--lifecycles 3000 --seed 2026`, fixed the same day. Unit tests pin the mechanisms:
// `repeated_hands_off_switch_finishes_what_a_dead_process_left` (shared/src/app/tests.rs) and
// `spec_3_9_aggregated_line_cancellation_cancelled_while_hands_off_is_planned_again`
// (shared/src/engine/tests/seed000.rs).

/// Finding I (`App::set_hands_off`): a store call failed after the switch was saved and before
/// its evaluation; the operator's retry found the order "already" switched and did nothing, so
/// nothing evaluated it again: put back, the reversal of its cancelled order (CancelOrder) was
/// never planned. Now a repeated switch cancels and evaluates again, and a saved switch is due
/// for the sweep at once.
#[test]
fn seed_2026_89() {
    assert_clean(2026, 89);
}

/// Finding I again: an invoice secured order put back after a throttled history insert; its
/// shipments (R1–R3) were never reported.
#[test]
fn seed_2026_222() {
    assert_clean(2026, 222);
}

/// Finding J (engine, `cancel_lines_together`): prepayment; the aggregated refund of a
/// not-deliverable line (60.38 EUR) was cancelled by a hands-off switch before it started, and
/// the cancelled operation still counted its line as covered, so once the order was back the
/// refund was never planned again (shown as `hands_off=1`: its replay without the switch, the
/// twin, refunds it).
#[test]
fn seed_2026_1282() {
    assert_clean(2026, 1282);
}

/// Finding K (`App::sweep`): Paylater invoice, standard mode, released with a shipping lock
/// (amount mismatch: an open error). An order with open errors holds the problem index entry,
/// not the recheck one, so when its authorization expired nothing evaluated it again and
/// `authorization_expired` never showed. Now the sweep also looks for due rechecks among the
/// problem orders. Unit test: `order_with_an_open_error_is_rechecked_when_its_authorization_expires`.
#[test]
fn seed_42_1099() {
    assert_clean(42, 1099);
}

/// Finding K again: Paylater direct debit with a settled credit note (an open error).
#[test]
fn seed_42_2748() {
    assert_clean(42, 2748);
}
