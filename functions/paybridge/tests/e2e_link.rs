//! End-to-end: behaviour.md §3.6, payment links on Computop Paygate. An order entered in pixi
//! without a shop payment, of a `mode = "link"` method: paybridge builds a Paygate payment-page
//! link, e-mails it to the customer through a real SMTP server (aiosmtpd), and tracks the
//! payment New → Requested → Successful → Booked, each step an order comment in pixi; the
//! customer pays (or cancels) on the Paygate simulator's page over HTTP, Paygate posts its
//! notify to paybridge's listener, and the order runs the usual flows. A link never makes a
//! second payment: it is e-mailed again with the same `TransID`/`ReqId`.

mod common;
use common::*;

use paybridge::demo::{Harness, Method, Options, Running, Scenario, Step};
use paybridge_core::ledger::{OpStatus, Purpose};
use paybridge_core::store::repo::Repo;
use paybridge_testkit::paygate_sim::{Endpoint, StepKind};
use paybridge_testkit::smtp_sink::{SinkOptions, SmtpSink};

async fn link_harness(sink: &SmtpSink) -> Harness {
    let smtp = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"shop@example.com\"\nto = \"ops@example.com\"\nstarttls = false\n",
        sink.port()
    );
    Harness::start_with(Options {
        extra_config: Some(smtp),
        payment_links: true,
        ..Options::default()
    })
    .await
    .expect("the harness starts")
}

/// An order entered in the ERP (shop number `P` + number, no payment) of the link method.
fn link_order(nr: i64) -> Scenario {
    Scenario::new(nr, "link", "3.6 payment link", Method::PaygateLink)
        .start(paybridge::demo::Start::Manual)
}

async fn ops(h: &Harness, order: i64) -> Vec<paybridge_core::ledger::Operation> {
    Repo::new(h.app.store.as_ref())
        .ops(&h.order_key(order), h.now())
        .await
        .expect("store")
}

fn comments_with(h: &Harness, order: i64, needle: &str) -> usize {
    h.pixi
        .comments(order)
        .iter()
        .filter(|c| c.contains(needle))
        .count()
}

async fn requested(h: &Harness, nr: i64) -> Running {
    let r = h.import(&link_order(nr)).await.expect("import");
    settle(h).await;
    r
}

#[tokio::test]
async fn e2e_3_6_link_e_mailed_paid_released_captured_and_booked() {
    let sink = SmtpSink::start(SinkOptions::default());
    let h = link_harness(&sink).await;
    let mut r = requested(&h, 12001).await;
    let order = r.scenario.order;

    // Requested: one mail to the customer, through SMTP, plain text and HTML, with the shop,
    // the amount and the order number; a comment in pixi; a hint; the order waits on HOLD.
    let mails: Vec<_> = sink
        .mails()
        .into_iter()
        .filter(|m| m.envelope_to.contains("customer-12001@example.com"))
        .collect();
    assert_eq!(mails.len(), 1, "{:?}", sink.mails());
    let m = &mails[0];
    assert!(m.subject.contains("12001"), "{}", m.subject);
    assert!(m.raw.contains("multipart/alternative"), "{}", m.raw);
    assert!(m.raw.contains("text/plain") && m.raw.contains("text/html"));
    assert!(
        m.raw.contains("100.00") && m.raw.contains("EUR"),
        "{}",
        m.raw
    );
    assert!(m.raw.contains(demo_shop()), "the shop's name: {}", m.raw);
    let link = h.link_of(order).expect("the link");
    assert!(link.contains("/paymentPage.aspx?MerchantID="), "{link}");
    assert_eq!(
        comments_with(&h, order, "payment link for 100.00 EUR e-mailed"),
        1
    );
    let s = state(&h, &r).await;
    assert_eq!(s.erp.status, "HOLD");
    assert_eq!(s.hints, vec!["payment_link_open".to_string()]);
    assert!(s.problems.is_empty());
    let link_op = ops(&h, order)
        .await
        .into_iter()
        .find(|o| o.plan.purpose == Purpose::PaymentLink)
        .expect("the link operation");
    assert_eq!(link_op.status, OpStatus::Done);

    // Successful: the customer pays on Paygate's page; the notify reaches paybridge over HTTP;
    // the payment is checked at Paygate and the order released.
    step(&h, &mut r, Step::PayLink).await;
    settle(&h).await;
    let pid = pid(&r);
    let notified: Vec<_> = h
        .paygate
        .notifies()
        .into_iter()
        .filter(|n| n.pay_id == pid)
        .collect();
    assert_eq!(notified.len(), 1);
    assert_eq!(notified[0].result, Ok(200));
    let s = state(&h, &r).await;
    assert_eq!(s.erp.status, "OPEN", "{s}");
    assert!(s.hints.is_empty() && s.problems.is_empty(), "{s}");
    assert_eq!(
        record(&h, order).await.link_payment_id.as_deref(),
        Some(pid.as_str())
    );
    let p = h.paygate.payment(&pid).expect("the payment");
    assert_eq!(
        (p.amount_auth, p.amount_cap),
        (10000, 0),
        "reserved, not captured"
    );

    // Booked: shipped and invoiced → captured at Paygate, booked in pixi.
    step(&h, &mut r, Step::Ship(vec![])).await;
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(
        format!("{s}"),
        "CLOSED charged 100.00 booked ZE 100.00",
        "{s}"
    );
    let caps: Vec<i64> = h
        .paygate
        .payment(&pid)
        .unwrap()
        .steps
        .iter()
        .filter(|t| t.kind == StepKind::Capture && t.succeeded())
        .map(|t| t.amount)
        .collect();
    assert_eq!(caps, vec![10000]);
}

fn demo_shop() -> &'static str {
    // The demo configuration names no shop: the tenant id is the shop's name.
    paybridge::demo::TENANT
}

#[tokio::test]
async fn e2e_3_6_link_re_sent_by_an_operator_and_paid_twice_is_one_payment() {
    let sink = SmtpSink::start(SinkOptions::default());
    let h = link_harness(&sink).await;
    let mut r = requested(&h, 12002).await;
    let order = r.scenario.order;
    let first = h.link_of(order).expect("link");
    let key = h.order_key(order);
    let resent = h
        .app
        .resend_payment_link(&key, h.now())
        .await
        .expect("resend");
    assert!(
        matches!(resent, paybridge_core::app::Resend::Queued(_)),
        "{resent:?}"
    );
    settle(&h).await;
    let links = h.links.payment_links();
    let mine: Vec<_> = links.iter().filter(|l| l.order_id == "12002").collect();
    assert_eq!(mine.len(), 2);
    assert!(mine[1].resent);
    assert_eq!(
        mine[1].url, first,
        "the same link: the same TransID and ReqId"
    );
    assert_eq!(
        comments_with(&h, order, "e-mailed to the customer again"),
        1
    );
    // The customer pays on both mails' links: Paygate answers the second with the first.
    step(&h, &mut r, Step::PayLink).await;
    let again = h.paygate.pay_link(&first).await.expect("second pay");
    assert_eq!(Some(again), r.payment_id.clone(), "one payment");
    settle(&h).await;
    let trans = h.paygate.payment(&pid(&r)).unwrap().trans_id;
    assert_eq!(h.paygate.payments_by_trans_id(&trans).len(), 1);
    let s = state(&h, &r).await;
    assert_eq!(s.erp.status, "OPEN");
    // Paid now: a re-send is refused.
    let refused = h
        .app
        .resend_payment_link(&key, h.now())
        .await
        .expect("resend");
    assert!(
        matches!(refused, paybridge_core::app::Resend::Refused(_)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn e2e_3_6_link_cancelled_on_the_page_stays_usable_then_paid() {
    let sink = SmtpSink::start(SinkOptions::default());
    let h = link_harness(&sink).await;
    let mut r = requested(&h, 12003).await;
    let order = r.scenario.order;
    step(&h, &mut r, Step::CancelLink).await;
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(
        (s.erp.status.as_str(), s.erp.locked),
        ("HOLD", false),
        "{s}"
    );
    assert!(s.problems.is_empty(), "{s}");
    assert!(
        s.hints.iter().any(|h| h == "payment_link_failed"),
        "{:?}",
        s.hints
    );
    assert_eq!(comments_with(&h, order, "was not completed"), 1);
    // The same link, paid now.
    step(&h, &mut r, Step::PayLink).await;
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(s.erp.status, "OPEN", "{s}");
    assert_eq!(record(&h, order).await.link_payment_id, r.payment_id);
}

#[tokio::test]
async fn e2e_3_6_link_unpaid_too_long_is_an_error_with_comment_and_e_mail() {
    let sink = SmtpSink::start(SinkOptions::default());
    let h = link_harness(&sink).await;
    let r = requested(&h, 12004).await;
    let order = r.scenario.order;
    h.clock_ahead(chrono::Duration::hours(25));
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(s.problems, vec!["payment_link_unpaid".to_string()], "{s}");
    assert_eq!(comments_with(&h, order, "ERROR the payment link"), 1);
    assert!(
        sink.mails()
            .iter()
            .any(|m| m.envelope_to.contains("ops@example.com")
                && m.raw.contains("payment_link_unpaid")),
        "the operators are told"
    );
    assert!(h.paygate.calls_to(Endpoint::Capture).is_empty());
}

#[tokio::test]
async fn e2e_3_6_no_customer_address_fails_the_link_for_an_operator_and_sends_nothing() {
    let sink = SmtpSink::start(SinkOptions::default());
    let h = link_harness(&sink).await;
    let sc = link_order(12005);
    let mut r = h.prepare(&sc);
    step(&h, &mut r, Step::Import).await;
    // The customer of this order has no e-mail address in pixi.
    let cust = h.pixi.order(12005).expect("order").cust_key;
    h.pixi.set_customer_email(cust, None);
    settle(&h).await;
    let s = state(&h, &r).await;
    assert!(s.problems.iter().any(|p| p == "op_failed"), "{s}");
    assert!(h.links.payment_links().is_empty());
    assert!(
        !sink
            .mails()
            .iter()
            .any(|m| m.envelope_to.contains("customer-")),
        "no customer mail"
    );
}
