//! Helpers the end-to-end test files share (each test file is its own crate and uses a part of
//! them): the harness, catalogue scenarios, steps, end states, and what the simulators saw.

#![allow(dead_code)]

use paybridge::demo::{self, EndState, Harness, Running, Scenario, Step};
use paybridge_core::store::repo::{OrderRecord, Repo};
use paybridge_testkit::unzer_sim::SimTransaction;
use rust_decimal::Decimal;

pub async fn harness() -> Harness {
    Harness::start().await.expect("the harness starts")
}

pub fn scenario(key: &str) -> Scenario {
    demo::scenarios(&[key]).expect("a catalogue key").remove(0)
}

pub async fn settle(h: &Harness) {
    h.settle().await.expect("paybridge comes to rest");
}

pub async fn step(h: &Harness, r: &mut Running, s: Step) {
    h.apply(r, &s).await.expect("step applies");
}

pub async fn state(h: &Harness, r: &Running) -> EndState {
    h.observe_run(r).await.expect("observe")
}

pub async fn assert_final(h: &Harness, r: &Running) {
    let actual = state(h, r).await;
    let expected = r.expected();
    assert_eq!(
        actual, expected,
        "order {}:\n  expected {expected}\n  actual   {actual}",
        r.scenario.order
    );
}

pub fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

pub fn pid(r: &Running) -> String {
    r.payment_id.clone().expect("the scenario has a payment")
}

pub async fn record(h: &Harness, order: i64) -> OrderRecord {
    Repo::new(h.app.store.as_ref())
        .order(&h.order_key(order), h.now())
        .await
        .expect("store")
        .expect("paybridge knows the order")
}

/// pixi requests of `call` for `order` (by `OrderNr`).
pub fn pixi_calls(h: &Harness, call: &str, order: i64) -> usize {
    let nr = order.to_string();
    h.pixi
        .requests()
        .iter()
        .filter(|r| r.call == call && r.param("OrderNr") == Some(nr.as_str()))
        .count()
}

/// Money moves paybridge asked Unzer for on one payment (POSTs under it).
pub fn unzer_posts(h: &Harness, payment_id: &str) -> usize {
    h.unzer
        .calls("POST", &format!("/v1/payments/{payment_id}/"))
}

pub fn txs(h: &Harness, payment_id: &str, kind: &str) -> Vec<SimTransaction> {
    h.unzer
        .transactions(payment_id)
        .into_iter()
        .filter(|t| t.kind == kind && t.status == "success")
        .collect()
}
