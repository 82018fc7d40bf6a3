//! End-to-end scenarios of behaviour.md §3.1–§3.5 on Computop Paygate: the real Paygate KVP
//! connector (Blowfish envelope, HMAC-SHA256 MACs, form-encoded posts) against the Paygate
//! simulator on loopback, the pixi connector against the pixi simulator, the app built exactly as
//! `paybridge serve` builds it on SQLite, and Paygate's notify posted over HTTP to
//! `POST /webhooks/paygate`. The scripted orders are `paybridge::demo::paygate_catalogue` (what
//! `paybridge demo` prints for Paygate); every end state is compared in full at pixi (status,
//! lock, comments, bookings) and at Paygate (charged, reversed, refunded, remaining), to the
//! cent, and these tests add what a summary line cannot show: the requests Paygate received
//! (amounts, `ReqId`, `TransID`), the ledger, faults.

mod common;
use common::*;

use paybridge::demo::{self, Harness, Options, Outcome, Step};
use paybridge_core::ledger::{OpStatus, Purpose, psp_reference};
use paybridge_core::store::repo::Repo;
use paybridge_testkit::paygate_sim::{Endpoint, Fault, SimCall, StepKind};
use std::time::Duration;

fn assert_end(o: &Outcome) {
    assert_eq!(
        o.actual, o.expected,
        "order {} ({}):\n  expected {}\n  actual   {}",
        o.scenario.order, o.scenario.flow, o.expected, o.actual
    );
}

async fn run(h: &Harness, keys: &[&str]) -> Vec<Outcome> {
    let out = h
        .run(&demo::scenarios(keys).expect("catalogue keys"))
        .await
        .expect("the scenarios run");
    for o in &out {
        assert_end(o);
    }
    out
}

fn of<'o>(out: &'o [Outcome], key: &str) -> (i64, String) {
    let o: &'o Outcome = out.iter().find(|o| o.scenario.key == key).expect("ran");
    (o.scenario.order, o.payment_id.clone().unwrap_or_default())
}

/// Paygate money requests on one payment.
fn calls(h: &Harness, ep: Endpoint, pay_id: &str) -> Vec<SimCall> {
    h.paygate
        .calls_to(ep)
        .into_iter()
        .filter(|c| c.field("PayID") == Some(pay_id))
        .collect()
}

/// Succeeded steps of a kind, amounts in cents.
fn steps(h: &Harness, pay_id: &str, kind: StepKind) -> Vec<i64> {
    h.paygate
        .payment(pay_id)
        .expect("payment at Paygate")
        .steps
        .iter()
        .filter(|s| s.kind == kind && s.succeeded())
        .map(|s| s.amount)
        .collect()
}

async fn op(h: &Harness, order: i64, purpose: Purpose) -> paybridge_core::ledger::Operation {
    Repo::new(h.app.store.as_ref())
        .ops(&h.order_key(order), h.now())
        .await
        .expect("store")
        .into_iter()
        .find(|o| o.plan.purpose == purpose)
        .unwrap_or_else(|| panic!("order {order}: no {purpose:?} operation"))
}

// ------------------------------------------------------------------------------- §3.1

#[tokio::test]
async fn e2e_paygate_3_1_expert_checks_only_and_standard_captures_before_the_release() {
    let h = harness().await;
    let out = run(&h, &["pg-3.1-release-expert", "pg-3.1-release-standard"]).await;
    let (expert, pid) = of(&out, "pg-3.1-release-expert");
    assert!(
        calls(&h, Endpoint::Capture, &pid).is_empty(),
        "expert mode moves no money"
    );
    assert!(
        !calls(&h, Endpoint::Inquire, &pid).is_empty(),
        "the payment was inquired"
    );
    assert_eq!(pixi_calls(&h, "pixiPaySetAuthorizationStatus", expert), 1);

    let (standard, pid) = of(&out, "pg-3.1-release-standard");
    let caps = calls(&h, Endpoint::Capture, &pid);
    assert_eq!(caps.len(), 1, "{caps:?}");
    let capture = op(&h, standard, Purpose::CaptureOrder).await;
    assert_eq!(capture.status, OpStatus::Done);
    // Every money call carries our reference as ReqId and the shop's TransID.
    assert_eq!(
        caps[0].field("ReqId"),
        Some(psp_reference(&capture.id).as_str())
    );
    assert_eq!(caps[0].field("TransID"), Some("T11002"));
    assert_eq!(caps[0].field("Amount"), Some("10000"));
    assert_eq!(caps[0].field("Currency"), Some("EUR"));
    assert_eq!(steps(&h, &pid, StepKind::Capture), vec![10000]);
    assert_eq!(
        capture.psp_tx.as_deref(),
        h.paygate
            .payment(&pid)
            .unwrap()
            .steps
            .last()
            .map(|s| s.xid.as_str()),
        "the ledger names Paygate's XID of the capture"
    );
}

#[tokio::test]
async fn e2e_paygate_3_1_mismatch_failed_pending_and_manual_orders() {
    let h = harness().await;
    let keys = [
        "pg-3.1-mismatch",
        "pg-3.1-failed",
        "pg-3.1-pending",
        "pg-3.1-manual",
    ];
    let out = run(&h, &keys).await;
    for key in ["pg-3.1-mismatch", "pg-3.1-failed"] {
        let (order, pid) = of(&out, key);
        let o = h.pixi.order(order).expect("order");
        assert!(o.shipping_lock, "{key}: released with a lock");
        assert!(
            calls(&h, Endpoint::Capture, &pid).is_empty(),
            "{key}: nothing captured"
        );
        assert!(
            !h.pixi.comments(order).is_empty(),
            "{key}: a comment says why"
        );
    }
    // The pending payment was released after Paygate's notify arrived over HTTP.
    let (_, pid) = of(&out, "pg-3.1-pending");
    let notified: Vec<_> = h
        .paygate
        .notifies()
        .into_iter()
        .filter(|n| n.pay_id == pid)
        .collect();
    assert_eq!(notified.len(), 1);
    assert_eq!(notified[0].result, Ok(200));
    // The manual order: no request to Paygate at all.
    let (manual, _) = of(&out, "pg-3.1-manual");
    assert!(h.pixi.comments(manual).is_empty());
}

// ------------------------------------------------------------------------------- §3.3

#[tokio::test]
async fn e2e_paygate_3_3_captures_each_invoice_klarna_too_paypal_is_booked_in_the_shop() {
    let h = harness().await;
    let keys = [
        "pg-3.3-expert",
        "pg-3.3-standard",
        "pg-3.3-klarna",
        "pg-3.3-paypal",
    ];
    let out = run(&h, &keys).await;
    let (_, pid) = of(&out, "pg-3.3-expert");
    assert_eq!(
        steps(&h, &pid, StepKind::Capture),
        vec![6495, 4000],
        "freight on the first"
    );
    let reqs: Vec<String> = calls(&h, Endpoint::Capture, &pid)
        .iter()
        .filter_map(|c| c.field("ReqId").map(str::to_string))
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[0], reqs[1], "each invoice is its own ReqId");
    let (_, pid) = of(&out, "pg-3.3-standard");
    assert_eq!(
        steps(&h, &pid, StepKind::Capture),
        vec![10000],
        "captured once, before release"
    );
    let (_, pid) = of(&out, "pg-3.3-klarna");
    assert_eq!(steps(&h, &pid, StepKind::Capture), vec![10000]);
    let (_, pid) = of(&out, "pg-3.3-paypal");
    assert!(
        calls(&h, Endpoint::Capture, &pid).is_empty(),
        "PayPal was booked in the shop"
    );
}

#[tokio::test]
async fn e2e_paygate_3_3_an_unknown_capture_outcome_is_resolved_without_a_second_capture() {
    let h = Harness::start_with(Options {
        unzer_request_timeout: Some(Duration::from_millis(800)),
        ..Options::default()
    })
    .await
    .expect("harness");
    let sc = scenario("pg-3.3-expert");
    let mut r = h.import(&sc).await.expect("import");
    settle(&h).await;
    let pid = pid(&r);
    // First invoice: Paygate captures, then answers 500. Second: it captures, then the reply
    // is held past the connector's timeout.
    h.paygate
        .inject_on(Endpoint::Capture, Fault::ServerErrorAfter, 1);
    step(&h, &mut r, Step::Ship(vec![0])).await;
    settle(&h).await;
    h.paygate.inject_on(
        Endpoint::Capture,
        Fault::TimeoutAfter(Duration::from_secs(3)),
        1,
    );
    step(&h, &mut r, Step::Ship(vec![1])).await;
    settle(&h).await;
    assert_final(&h, &r).await;
    assert_eq!(
        steps(&h, &pid, StepKind::Capture),
        vec![6495, 4000],
        "each invoice captured exactly once"
    );
    // Each re-send went under the same ReqId and Paygate answered the original.
    let caps = calls(&h, Endpoint::Capture, &pid);
    assert!(caps.len() >= 3, "{caps:?}");
    assert!(caps.iter().any(|c| c.replayed), "{caps:?}");
}

// ------------------------------------------------------------------------------- §3.4

#[tokio::test]
async fn e2e_paygate_3_4_whole_order_reversed_lines_left_to_expire_or_credited() {
    let h = harness().await;
    let keys = [
        "pg-3.4-whole-expert",
        "pg-3.4-whole-standard",
        "pg-3.4-lines-expert",
        "pg-3.4-lines-standard",
        "pg-3.4-paypal-whole",
    ];
    let out = run(&h, &keys).await;
    let (_, pid) = of(&out, "pg-3.4-whole-expert");
    let rev = calls(&h, Endpoint::Reverse, &pid);
    assert_eq!(rev.len(), 1, "the whole authorization reversed once");
    assert_eq!(rev[0].field("Amount"), Some("10000"));
    assert!(h.paygate.payment(&pid).unwrap().reversed);

    // After a partial capture Paygate's reverse would undo that capture: nothing is sent, the
    // rest stays authorized at Paygate and expires there; the ledger says so.
    let (order, pid) = of(&out, "pg-3.4-lines-expert");
    assert!(calls(&h, Endpoint::Reverse, &pid).is_empty());
    assert_eq!(steps(&h, &pid, StepKind::Capture), vec![6000]);
    let ops = Repo::new(h.app.store.as_ref())
        .ops(&h.order_key(order), h.now())
        .await
        .expect("store");
    let closing = ops
        .iter()
        .find(|o| {
            o.plan
                .psp
                .as_ref()
                .is_some_and(|c| matches!(c, paybridge_core::ledger::PspCall::Reverse { .. }))
        })
        .expect("a closing reversal was planned");
    assert_eq!(closing.status, OpStatus::Done);
    assert!(
        closing
            .psp_tx
            .as_deref()
            .is_some_and(|t| t.starts_with("unsent-")),
        "{closing:?}"
    );

    for key in ["pg-3.4-whole-standard", "pg-3.4-paypal-whole"] {
        let (_, pid) = of(&out, key);
        assert_eq!(steps(&h, &pid, StepKind::Credit), vec![10000], "{key}");
    }
    let (_, pid) = of(&out, "pg-3.4-lines-standard");
    assert_eq!(steps(&h, &pid, StepKind::Credit), vec![4000]);
}

// ------------------------------------------------------------------------------- §3.5

#[tokio::test]
async fn e2e_paygate_3_5_credit_notes_are_credited_once_even_across_captures() {
    let h = harness().await;
    let keys = ["pg-3.5-expert", "pg-3.5-two-captures", "pg-3.5-paypal"];
    let out = run(&h, &keys).await;
    let (_, pid) = of(&out, "pg-3.5-expert");
    assert_eq!(steps(&h, &pid, StepKind::Credit), vec![3000]);
    let (order, pid) = of(&out, "pg-3.5-two-captures");
    // One credit on the payment spans both captures (Paygate credits against AmountCap).
    assert_eq!(steps(&h, &pid, StepKind::Credit), vec![7000]);
    let refund = op(&h, order, Purpose::RefundCredit).await;
    let credit = calls(&h, Endpoint::Credit, &pid);
    assert_eq!(
        credit[0].field("ReqId"),
        Some(psp_reference(&refund.id).as_str())
    );
    let (_, pid) = of(&out, "pg-3.5-paypal");
    assert_eq!(steps(&h, &pid, StepKind::Credit), vec![2500]);
    let p = h.paygate.payment(&pid).unwrap();
    assert_eq!((p.amount_cap, p.amount_cred), (10000, 2500));
}

#[tokio::test]
async fn e2e_paygate_3_5_a_credit_whose_reply_is_lost_is_not_credited_twice() {
    let h = harness().await;
    let sc = scenario("pg-3.5-expert");
    let mut r = h.import(&sc).await.expect("import");
    settle(&h).await;
    step(&h, &mut r, Step::Ship(vec![])).await;
    settle(&h).await;
    let pid = pid(&r);
    h.paygate.inject_on(Endpoint::Credit, Fault::DropAfter, 1);
    step(&h, &mut r, Step::CreditNote(3000)).await;
    settle(&h).await;
    assert_final(&h, &r).await;
    assert_eq!(steps(&h, &pid, StepKind::Credit), vec![3000]);
}

// ------------------------------------------------------------------------------- notify

#[tokio::test]
async fn e2e_paygate_notify_early_duplicate_and_forged() {
    let h = harness().await;
    let sc = scenario("pg-3.1-release-expert");
    let mut r = h.prepare(&sc);
    let pid = pid(&r);
    let url = h.url("/webhooks/paygate");
    // Before the order is known: stored, answered 200.
    assert_eq!(h.paygate.notify(&pid, &url, None).await, Ok(200));
    // Paygate's re-send of the same notify: 200 again, one stored event.
    assert_eq!(h.paygate.notify(&pid, &url, None).await, Ok(200));
    // A forged body (someone else's key): 401, nothing stored.
    let forged = paybridge_testkit::paygate_sim::PaygateSim::start().await;
    forged.add_merchant(demo::PAYGATE_MERCHANT, "someOtherKey", "someOtherHmac");
    let fake = forged.create_payment(
        demo::PAYGATE_MERCHANT,
        "T1",
        100,
        "EUR",
        paybridge_testkit::paygate_sim::PaymentKind::Reserved,
    );
    assert_eq!(forged.notify(&fake, &url, None).await, Ok(401));
    let events = Repo::new(h.app.store.as_ref())
        .payment_events(demo::TENANT, &pid, h.now())
        .await
        .expect("store");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        Repo::new(h.app.store.as_ref())
            .payment_events(demo::TENANT, &fake, h.now())
            .await
            .expect("store")
            .is_empty()
    );
    // The order arrives; the event is applied with the import; the end state is the usual one.
    step(&h, &mut r, Step::Import).await;
    settle(&h).await;
    assert_final(&h, &r).await;
}

#[tokio::test]
async fn e2e_paygate_3_3_a_capture_held_pending_is_never_sent_again_and_booked_once_final() {
    let h = harness().await;
    let sc = scenario("pg-3.3-klarna");
    let mut r = h.import(&sc).await.expect("import");
    settle(&h).await;
    let pid = pid(&r);
    h.paygate.inject_on(Endpoint::Capture, Fault::Pending, 1);
    step(&h, &mut r, Step::Ship(vec![])).await;
    // Paygate holds the capture open: paybridge looks again on its backoff, so it does not come
    // to rest (80 rounds, the clock jumping 5 minutes each, well past the 10-minute settle
    // time) — and never re-sends the capture while Paygate's last step is pending.
    assert!(
        h.settle().await.is_err(),
        "still looking while the capture is open"
    );
    assert_eq!(calls(&h, Endpoint::Capture, &pid).len(), 1);
    assert_eq!(
        h.pixi.bookings_for_order(sc.order).len(),
        0,
        "not booked yet"
    );
    // The capture turns final; Paygate notifies; the same ReqId now answers the original.
    assert!(h.paygate.settle(&pid, None, true));
    assert_eq!(h.send_webhook("", &pid).await.expect("notify"), 200);
    settle(&h).await;
    assert_final(&h, &r).await;
    assert_eq!(
        steps(&h, &pid, StepKind::Capture),
        vec![10000],
        "one capture"
    );
}
