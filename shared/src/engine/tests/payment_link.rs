//! Engine tests of behaviour.md §3.6: an order of a `mode = "link"` method that comes without
//! a payment gets one payment request (a link e-mailed to the customer), waits with a hint and
//! becomes an error after `pending_error_after_hours`; a failed attempt on the link is a comment
//! and a hint (no lock, no release); once a payment is handed in, the usual flows run on it,
//! money moved as in expert mode.

use super::*;

/// An order entered in the ERP (shop number `P` + number) without a payment, of a link method.
fn link_order() -> S {
    let mut s = S::new(PM::Card, Mode::Link, LINES);
    s.order.psp_payment_id = None;
    s.order.shop_order_no = format!("P{}", s.order.order_id);
    s.psp = None;
    assert!(
        s.order.is_manual(),
        "the shape of an order entered in the ERP"
    );
    s
}

#[test]
fn spec_3_6_an_order_without_a_payment_gets_one_payment_request_and_no_lock() {
    let mut s = link_order();
    let d = s.decide();
    assert_eq!(purposes(&d), [P::PaymentLink]);
    let p = get(&d, P::PaymentLink);
    assert_eq!(
        p.psp,
        Some(PspCall::RequestPayment {
            amount: eur("100.00")
        })
    );
    assert!(
        matches!(&p.erp[..], [ErpWrite::Comment { text }] if text.contains("payment link for 100.00 EUR")),
        "{:?}",
        p.erp
    );
    assert!(d.flags.is_empty(), "nothing to say before the link is out");
    // Planned once: the same decision again plans nothing new.
    s.insert(&d);
    assert!(s.decide().plans.is_empty());
}

#[test]
fn spec_3_6_an_unpaid_link_is_a_hint_then_an_error_after_the_configured_hours() {
    let mut s = link_order();
    s.step(); // the link e-mailed
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "payment_link_open")]);
    let deadline = now() + chrono::Duration::hours(24);
    assert_eq!(
        d.recheck_at,
        Some(deadline),
        "looked at again when the time is up"
    );
    s.at = deadline;
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "payment_link_unpaid")]);
    // An error: one ERP comment, once.
    assert_eq!(purposes(&d), [P::Problem]);
}

#[test]
fn spec_3_6_a_paid_link_is_checked_released_and_captured_per_invoice() {
    let mut s = link_order();
    s.step();
    // The payment made on the link, handed in by the caller as the order's payment.
    s.order.psp_payment_id = Some("s-pay-1".into());
    s.psp = Some(payment(
        PM::Card,
        TxKind::Authorize,
        TxStatus::Success,
        eur("100.00"),
    ));
    let d = s.step();
    assert_eq!(
        purposes(&d),
        [P::Release],
        "expert mode: no capture at release"
    );
    assert!(d.flags.is_empty(), "{:?}", d.flags);
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.step();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(get(&d, P::CaptureInvoice).psp, capture(eur("60.00")));
}

#[test]
fn spec_3_6_a_failed_attempt_on_the_link_is_a_comment_and_a_hint_and_the_link_stays() {
    let mut s = link_order();
    s.step();
    s.order.psp_payment_id = Some("s-pay-1".into());
    s.psp = Some(payment(
        PM::Card,
        TxKind::Authorize,
        TxStatus::Error,
        eur("100.00"),
    ));
    let d = s.decide();
    assert_eq!(purposes(&d), [P::PaymentLinkFailed]);
    assert!(
        flags(&d).contains(&(Severity::Hint, "payment_link_failed:s-pay-1")),
        "{:?}",
        flags(&d)
    );
    assert!(
        !d.plans
            .iter()
            .any(|p| p.erp.contains(&ErpWrite::SetShippingLock)),
        "no lock: the customer may still pay"
    );
    s.insert(&d);
    s.complete_all();
    assert!(s.decide().plans.is_empty(), "commented once");
}

#[test]
fn spec_3_6_a_closed_or_cancelled_order_asks_for_no_payment() {
    let mut s = link_order();
    s.cancel(&["L1", "L2", "L3"], STO);
    assert!(s.decide().plans.is_empty());
    let mut s = link_order();
    s.order.status = OrderStatus::Closed;
    assert!(s.decide().plans.is_empty());
}

#[test]
fn spec_3_1_5_manual_orders_of_other_modes_are_still_ignored() {
    let mut s = link_order();
    s.cfg.mode = Expert;
    let d = s.decide();
    assert!(d.plans.is_empty() && d.flags.is_empty(), "{d:?}");
}
