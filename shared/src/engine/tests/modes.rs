//! Engine tests of behaviour.md §2: standard and expert mode.

use super::*;

#[test]
fn spec_2_standard_captures_full_amount_before_release_then_releases() {
    for method in [PM::Card, PM::ApplePay, PM::Paypal] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::CaptureOrder], "{method:?}");
        assert_eq!(get(&d, P::CaptureOrder).psp, capture(eur("100.00")));
        assert!(
            d.plans.iter().all(|p| !p.erp.contains(&ErpWrite::Release)),
            "no release before the capture"
        );
        assert!(d.flags.is_empty() && d.notes.is_empty());
        s.insert(&d);
        // planned, then running: nothing new, still no release
        assert_eq!(idle(s.decide()), Decision::default());
        s.set_status(P::CaptureOrder, OpStatus::Running);
        assert_eq!(idle(s.decide()), Decision::default());
        s.complete(P::CaptureOrder);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::Release]);
        assert_eq!(writes(get(&d, P::Release)), [ErpWrite::Release]);
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        assert_eq!(s.order.status, OrderStatus::Open);
        assert_eq!(
            idle(s.decide()),
            Decision::default(),
            "idempotent once done"
        );
    }
}

#[test]
fn spec_2_standard_release_follows_a_done_capture_even_before_the_psp_view_shows_it() {
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Done); // PSP view not refreshed yet
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    no_money(&d);
}

#[test]
fn spec_2_standard_capture_before_release_is_budgeted_against_operations_in_progress() {
    // The order was cancelled on HOLD: the reversal of the whole authorization is planned.
    let mut s = S::new(PM::Card, Standard, LINES);
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide();
    assert_eq!(
        (purposes(&d), d.plans[0].psp.clone()),
        (vec![P::CancelOrder], reverse(eur("100.00")))
    );
    s.insert(&d);
    // A concurrent evaluation still holds the facts from before the cancellation (the stored
    // record) but reads the current ledger: the authorization is already spoken for.
    s.cancel(&["L1", "L2", "L3"], OPN);
    let d = s.decide();
    assert!(
        !purposes(&d).contains(&P::CaptureOrder),
        "captures money reserved by the reversal: {d:#?}"
    );
    no_money(&d);
}

#[test]
fn spec_2_standard_shop_already_captured_is_not_captured_again() {
    // authorized, then captured by the shop in full: nothing left to capture
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.pay()
            .transactions
            .push(tx(TxKind::Charge, TxStatus::Success, eur("100.00")));
        let d = s.decide();
        assert_eq!(purposes(&d), [P::Release], "{mode:?}");
        no_money(&d);
    }
    // the shop captured a part: standard captures the rest before release
    let mut s = S::new(PM::Card, Standard, LINES);
    s.pay()
        .transactions
        .push(tx(TxKind::Charge, TxStatus::Success, eur("30.00")));
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureOrder]);
    assert_eq!(get(&d, P::CaptureOrder).psp, capture(eur("70.00")));
}

#[test]
fn spec_2_standard_invoices_are_only_checked_against_the_order_total() {
    let mut s = S::new(PM::Card, Standard, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.step();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(
        get(&d, P::BookInvoice).psp,
        None,
        "standard mode captured already: no second capture"
    );
    assert_eq!(writes(get(&d, P::BookInvoice)), [mark("R1", eur("60.00"))]);
    s.invoice("R2", "40.00", &["L2", "L3"]);
    let d = s.step();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(get(&d, P::BookInvoice).doc_id, "R2");
    // Σ invoices 100.03 > order 100.00 + tolerance 0.02
    s.invoice("R3", "0.03", &[]);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "invoices_exceed_order")]);
    assert_eq!(purposes(&d), [P::Problem]);
    // within the tolerance it is accepted
    let mut s2 = S::new(PM::Card, Standard, LINES).released();
    s2.invoice("R1", "100.02", &["L1", "L2", "L3"]);
    assert_eq!(purposes(&s2.decide()), [P::BookInvoice]);
}

#[test]
fn spec_2_expert_releases_without_capture_and_captures_each_invoice_exactly() {
    for method in [PM::Card, PM::ApplePay, PM::Paypal] {
        let mut s = S::new(method, Expert, LINES);
        let d = s.step();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        no_money(&d);
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.step();
        assert_eq!(purposes(&d), [P::CaptureInvoice]);
        assert_eq!(get(&d, P::CaptureInvoice).psp, capture(eur("60.00")));
        s.invoice("R2", "40.00", &["L2", "L3"]);
        let d = s.step();
        assert_eq!(purposes(&d), [P::CaptureInvoice]);
        assert_eq!(
            (
                get(&d, P::CaptureInvoice).doc_id.as_str(),
                get(&d, P::CaptureInvoice).psp.clone()
            ),
            ("R2", capture(eur("40.00")))
        );
        s.order.status = OrderStatus::Closed;
        assert_eq!(
            idle(s.decide()),
            Decision::default(),
            "fully captured: nothing to close"
        );
    }
}

#[test]
fn spec_2_expert_cancellation_before_capture_reverses_and_standard_refunds() {
    for (mode, expected) in [
        (Expert, (P::CancelOrder, reverse(eur("100.00")))),
        (
            Standard,
            (P::RefundOrder, refund(eur("100.00"), RefundReason::Cancel)),
        ),
    ] {
        let mut s = S::new(PM::Card, mode, LINES).released();
        s.cancel(&["L1", "L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.decide();
        assert_eq!(purposes(&d), [expected.0], "{mode:?}");
        assert_eq!(d.plans[0].psp, expected.1);
    }
}

#[test]
fn spec_2_expert_closes_the_payment_after_the_last_partial_delivery() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.cancel(&["L2", "L3"], STO);
    let d = s.decide();
    assert_eq!(
        purposes(&d),
        [P::CaptureInvoice],
        "expert sends nothing for cancelled lines"
    );
    s.insert(&d);
    s.order.status = OrderStatus::Closed;
    assert_eq!(
        idle(s.decide()),
        Decision::default(),
        "not while the capture is in progress"
    );
    s.complete(P::CaptureInvoice);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::ClosePayment]);
    assert_eq!(
        get(&d, P::ClosePayment).psp,
        reverse(eur("40.00")),
        "exactly the remainder"
    );
    s.insert(&d);
    s.complete_all();
    assert_eq!(idle(s.decide()), Decision::default());
    let pos = s.psp.as_ref().unwrap().position().unwrap();
    assert_eq!(
        (pos.charged, pos.reversed, pos.remaining().unwrap()),
        (eur("60.00"), eur("40.00"), eur("0.00"))
    );
}

#[test]
fn spec_2_charged_in_the_shop_only_refunds_remain() {
    for method in [
        PM::Sofort,
        PM::Eps,
        PM::Ideal,
        PM::Giropay,
        PM::Alipay,
        PM::Przelewy24,
    ] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::BookInvoice]);
        assert_eq!(writes(&d.plans[0]), [mark("R1", eur("60.00"))]);
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        s.credit("C1", Some("R1"), "15.00");
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::RefundCredit]);
        assert_eq!(d.plans[0].psp, refund(eur("15.00"), RefundReason::Return));
    }
}
