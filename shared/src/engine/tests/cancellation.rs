//! Engine tests of behaviour.md §3.4: cancellations.

use super::*;

#[test]
fn spec_3_4_whole_order_cancelled_per_mode() {
    // released (standard: captured), then every line STO / NLB
    for (mode, purpose, call) in [
        (
            Standard,
            P::RefundOrder,
            refund(eur("100.00"), RefundReason::Cancel),
        ),
        (Expert, P::CancelOrder, reverse(eur("100.00"))),
    ] {
        let mut s = S::new(PM::Card, mode, LINES).released();
        s.cancel(&["L1", "L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.step();
        assert_eq!(purposes(&d), [purpose], "{mode:?}");
        assert_eq!(d.plans[0].psp, call);
        assert_eq!(idle(s.decide()), Decision::default(), "sent once");
        let pos = s.psp.as_ref().unwrap().position().unwrap();
        assert!(pos.remaining().unwrap().is_zero() && pos.refundable().unwrap().is_zero());
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_on_hold_reverses_without_capturing_first() {
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::CancelOrder], "{mode:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_prepayment_cancels_before_receipt_and_refunds_after() {
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelOrder]);
    assert_eq!(d.plans[0].psp, reverse(eur("100.00")));

    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::RefundOrder]);
    assert_eq!(d.plans[0].psp, refund(eur("100.00"), RefundReason::Cancel));
}

#[test]
fn spec_3_4_whole_order_cancelled_prepayment_partly_received_returns_everything() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("40.00");
    s.cancel(&["L1", "L2", "L3"], STO);
    let mut calls = vec![];
    for _ in 0..4 {
        let d = s.step();
        calls.extend(
            d.plans
                .iter()
                .filter_map(|p| p.psp.clone().map(|c| (p.purpose, c))),
        );
    }
    calls.sort_by_key(|(p, _)| *p == P::RefundOrder);
    assert_eq!(
        calls,
        [
            (P::CancelOrder, reverse(eur("60.00")).unwrap()),
            (
                P::RefundOrder,
                refund(eur("40.00"), RefundReason::Cancel).unwrap()
            )
        ],
        "what is still due is cancelled, what was received is refunded"
    );
}

#[test]
fn spec_3_4_whole_order_cancelled_paylater_cancels_before_the_term_and_nothing_after() {
    for method in [
        PM::PaylaterInvoice,
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelOrder], "{method:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
        // after a capture (the term started): nothing, the remainder expires
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.settle();
        s.cancel(&["L1", "L2", "L3"], STO);
        assert_eq!(idle(s.decide_any_mode()), Decision::default(), "{method:?}");
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_charged_in_shop_refunds_and_legacy_invoice_cancels() {
    let mut s = S::new(PM::Sofort, Standard, LINES).released();
    s.cancel(&["L1", "L2", "L3"], NLB);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::RefundOrder]);
    assert_eq!(d.plans[0].psp, refund(eur("100.00"), RefundReason::Cancel));

    for method in [PM::Invoice, PM::InvoiceSecured] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelOrder], "{method:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
    }
}

#[test]
fn spec_3_4_lines_cancelled_standard_refunded_once_closed() {
    for method in [PM::Card, PM::Sofort] {
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.cancel(&["L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.step();
        assert_eq!(
            purposes(&d),
            [P::BookInvoice],
            "{method:?}: not before CLOSED"
        );
        s.order.status = OrderStatus::Closed;
        let d = s.step();
        assert_eq!(purposes(&d), [P::RefundLine, P::RefundLine]);
        assert_eq!(
            (d.plans[0].doc_kind, d.plans[0].doc_id.as_str()),
            (DocKind::Line, "L2")
        );
        assert_eq!(d.plans[0].psp, refund(eur("30.00"), RefundReason::Cancel));
        assert_eq!(d.plans[1].psp, refund(eur("10.00"), RefundReason::Cancel));
        assert_eq!(idle(s.decide()), Decision::default(), "refunded once");
    }
}

#[test]
fn spec_3_4_lines_cancelled_expert_sends_nothing_but_closes_after_the_last_delivery() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.cancel(&["L2"], STO);
    assert_eq!(
        idle(s.decide()),
        Decision::default(),
        "no refund, no reversal per line"
    );
    s.invoice("R1", "60.00", &["L1"]);
    s.step();
    s.invoice("R2", "10.00", &["L3"]);
    s.step();
    assert_eq!(
        idle(s.decide()),
        Decision::default(),
        "not before the order is CLOSED"
    );
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(purposes(&d), [P::ClosePayment]);
    assert_eq!(d.plans[0].psp, reverse(eur("30.00")));
}

#[test]
fn spec_3_4_lines_cancelled_prepayment_aggregated_once_closed_or_received() {
    // not received: aggregated when CLOSED, reverses (part of) the amount due
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.cancel(&["L2"], STO);
    s.cancel(&["L3"], NLB);
    assert_eq!(
        idle(s.decide_any_mode()),
        Decision::default(),
        "OPEN and nothing received: wait"
    );
    s.order.status = OrderStatus::Closed;
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(
        (d.plans[0].doc_kind, d.plans[0].doc_id.as_str()),
        (DocKind::Line, "L2+L3")
    );
    assert_eq!(d.plans[0].psp, reverse(eur("40.00")));
    s.insert(&d);
    s.complete_all();
    // the customer now owes 60.00; the receipt clears the lock
    s.receive("60.00");
    assert_eq!(purposes(&s.decide_any_mode()), [P::ClearLock]);

    // received: aggregated at once (order still OPEN), refunded
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.cancel(&["L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(d.plans[0].doc_id, "L2+L3");
    assert_eq!(d.plans[0].psp, refund(eur("40.00"), RefundReason::Cancel));
}

#[test]
fn spec_3_4_later_cancelled_lines_form_a_new_aggregate_and_are_never_resent() {
    let mut s = S::new(
        PM::Invoice,
        Expert,
        &[
            ("L1", "50.00"),
            ("L2", "30.00"),
            ("L3", "15.00"),
            ("L4", "5.00"),
        ],
    )
    .released();
    s.cancel(&["L2", "L3"], STO);
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(
        (purposes(&d), d.plans[0].doc_id.as_str()),
        (vec![P::CancelLines], "L2+L3")
    );
    assert_eq!(idle(s.decide()), Decision::default());
    s.cancel(&["L4"], NLB);
    let d = s.step();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(
        (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
        ("L4", reverse(eur("5.00")))
    );
    assert_eq!(idle(s.decide()), Decision::default());
}

#[test]
fn spec_3_4_lines_cancelled_legacy_invoice_aggregated_once_closed() {
    for method in [PM::Invoice, PM::InvoiceSecured] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(idle(s.decide_any_mode()), Decision::default(), "{method:?}");
        s.order.status = OrderStatus::Closed;
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelLines]);
        assert_eq!(
            (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
            ("L2+L3", reverse(eur("40.00")))
        );
    }
}

#[test]
fn spec_3_4_lines_cancelled_paylater_invoice_aggregated_once_the_term_started() {
    for method in [PM::PaylaterInvoice, PM::InvoicePaylater] {
        let mut s = S::new(method, Expert, LINES).released();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(
            idle(s.decide_any_mode()),
            Decision::default(),
            "{method:?}: term not started"
        );
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.decide_any_mode();
        assert_eq!(
            purposes(&d),
            [P::CaptureInvoice],
            "not in the same step as the charge"
        );
        s.insert(&d);
        s.complete_all();
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelLines]);
        assert_eq!(
            (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
            ("L2+L3", reverse(eur("40.00")))
        );
        // or once CLOSED without any charge
        let mut s = S::new(method, Expert, LINES).released();
        s.cancel(&["L3"], NLB);
        s.order.status = OrderStatus::Closed;
        assert_eq!(s.decide_any_mode().plans[0].psp, reverse(eur("10.00")));
    }
}

#[test]
fn spec_3_4_lines_cancelled_paylater_debit_sends_nothing() {
    for method in [
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.settle();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(idle(s.decide_any_mode()), Decision::default(), "{method:?}");
        s.order.status = OrderStatus::Closed;
        assert_eq!(
            idle(s.decide_any_mode()),
            Decision::default(),
            "{method:?}: the remainder expires"
        );
    }
}

#[test]
fn spec_3_4_returns_are_sent_singly_next_to_the_aggregate() {
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.invoice("R1", "60.00", &["L1"]);
    s.cancel(&["L2", "L3"], STO);
    s.order.status = OrderStatus::Closed;
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide_any_mode();
    assert_eq!(
        purposes(&d),
        [P::BookInvoice, P::CancelLines, P::RefundCredit]
    );
    assert_eq!(d.plans[1].psp, refund(eur("40.00"), RefundReason::Cancel));
    assert_eq!(d.plans[2].psp, refund(eur("20.00"), RefundReason::Return));
    assert_eq!(d.plans[2].doc_id, "C1");
}
