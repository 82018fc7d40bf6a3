//! `paybridge order hands-off|hands-on|solved` as an operator runs it: the real binary, a
//! separate process, on the SQLite file of the demo harness (the pixi and Unzer simulators on
//! loopback, the app built as `paybridge serve` builds it). The harness plays the running
//! server: it polls and works the jobs the command enqueued.

mod common;
use common::*;

use paybridge::demo::{self, Harness, Running, Step};
use paybridge_core::store::repo::Repo;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_paybridge");

async fn released(h: &Harness) -> Running {
    let sc = demo::scenarios(&["3.1-release-expert"])
        .expect("a catalogue key")
        .remove(0);
    let r = h.import(&sc).await.expect("import");
    h.settle().await.expect("settle");
    let o = h.pixi.order(r.scenario.order).expect("the order in pixi");
    assert_eq!(o.status, "OPEN", "released by the authorization check");
    r
}

/// Runs `paybridge order <args…> --config <the harness's config>` in its own process.
async fn order_cmd(h: &Harness, args: &[&str]) -> Output {
    let config = h.config_path.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("order")
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn capture_posts(h: &Harness, r: &Running) -> usize {
    let pid = r.payment_id.clone().expect("a payment");
    h.unzer
        .calls("POST", &format!("/v1/payments/{pid}/charges"))
}

#[tokio::test]
async fn spec_3_9_hands_off_from_the_command_line_stops_the_capture_until_hands_on() {
    let h = Harness::start().await.expect("the harness starts");
    let mut r = released(&h).await;
    let nr = r.scenario.order;
    let n = nr.to_string();

    let out = order_cmd(&h, &["hands-off", &n]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("order {nr} (pixi): taken out of automation (hands-off)")
    );
    let rec = record(&h, nr).await;
    assert!(rec.hands_off_since.is_some());
    assert!(
        rec.flags.iter().any(|f| f.code == "hands_off"),
        "{:?}",
        rec.flags
    );

    // the running server writes the comment; pixi ships and invoices: nothing is captured
    h.settle().await.expect("settle");
    let comments = h.pixi.comments(nr);
    assert!(
        comments
            .iter()
            .any(|c| c.contains("taken out of automation")),
        "{comments:?}"
    );
    h.apply(&mut r, &Step::Ship(vec![])).await.expect("ship");
    h.settle().await.expect("settle");
    assert_eq!(capture_posts(&h, &r), 0, "hands-off: no capture");

    // a second hands-off changes nothing and says so
    let again = order_cmd(&h, &["hands-off", &n]).await;
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("already out of automation"),
        "{}",
        stdout(&again)
    );

    let on = order_cmd(&h, &["hands-on", &n]).await;
    assert!(on.status.success(), "{}", stderr(&on));
    assert_eq!(
        stdout(&on),
        format!("order {nr} (pixi): put back into automation")
    );
    h.settle().await.expect("settle");
    assert_eq!(
        capture_posts(&h, &r),
        1,
        "back on: the invoice is captured once"
    );
    let comments = h.pixi.comments(nr);
    assert!(
        comments.iter().any(|c| c.contains("back in automation")),
        "{comments:?}"
    );
    let rec = record(&h, nr).await;
    assert!(rec.hands_off_since.is_none());
    assert!(
        !rec.flags.iter().any(|f| f.code == "hands_off"),
        "{:?}",
        rec.flags
    );
    let state = h.observe_run(&r).await.expect("observe");
    assert_eq!(
        state.psp.expect("payment").charged,
        "100.00".parse().unwrap()
    );
}

#[tokio::test]
async fn spec_4_order_command_refuses_unknown_orders_and_connections() {
    let h = Harness::start().await.expect("the harness starts");
    let out = order_cmd(&h, &["hands-off", "99999"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("order 99999 of connection \"pixi\" is not known to paybridge"),
        "{}",
        stderr(&out)
    );
    let out = order_cmd(&h, &["hands-on", "--erp", "nope", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--erp \"nope\": no such [[erp]] connection (configured: pixi)"));
    // the unknown order was not created by asking for it
    let unknown = Repo::new(h.app.store.as_ref())
        .order(&h.order_key(99999), h.now())
        .await
        .expect("store");
    assert!(unknown.is_none());
}

#[tokio::test]
async fn spec_4_order_solved_clears_the_error_mark() {
    let h = Harness::start().await.expect("the harness starts");
    let sc = demo::scenarios(&["3.1-mismatch"]).expect("key").remove(0);
    let r = h.import(&sc).await.expect("import");
    h.settle().await.expect("settle");
    let nr = r.scenario.order;
    assert_eq!(record(&h, nr).await.open_errors().count(), 1);
    let out = order_cmd(&h, &["solved", &nr.to_string()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("order {nr} (pixi): problems marked solved")
    );
    assert_eq!(record(&h, nr).await.open_errors().count(), 0);
}
