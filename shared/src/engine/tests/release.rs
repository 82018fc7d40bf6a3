//! Engine tests of behaviour.md §3.1: authorization check and release.

use super::*;

#[test]
fn spec_3_1_1_pending_payment_stays_on_hold_with_a_hint() {
    let cases = [
        (PM::Card, Standard),
        (PM::Card, Expert),
        (PM::Sofort, Standard),
        (PM::PaylaterInvoice, Expert),
    ];
    for (method, mode) in cases {
        let mut s = S::new(method, mode, LINES);
        s.pay().transactions[0].status = TxStatus::Pending;
        let d = s.decide();
        assert!(d.plans.is_empty(), "{method:?} {mode:?}: {d:#?}");
        assert_eq!(flags(&d), [(Severity::Hint, "pending")]);
        assert_eq!(d.errors().count(), 0, "a hint, not an error");
        // re-checked later: once accepted it goes on
        s.pay().transactions[0].status = TxStatus::Success;
        let d = s.decide();
        assert!(d.flags.is_empty());
        let first = if method == PM::Card && mode == Standard {
            P::CaptureOrder
        } else {
            P::Release
        };
        assert_eq!(purposes(&d), [first]);
    }
}

#[test]
fn spec_3_1_3_accepted_matching_payment_is_released_per_mode() {
    let s = S::new(PM::Card, Expert, LINES);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::Release]);
    assert!(d.flags.is_empty() && d.notes.is_empty());
    let s = S::new(PM::Card, Standard, LINES);
    assert_eq!(purposes(&s.decide()), [P::CaptureOrder]);
}

#[test]
fn spec_3_1_2_difference_within_tolerance_is_absorbed_and_noted() {
    for (psp_amount, mode) in [
        ("100.02", Expert),
        ("99.98", Expert),
        ("100.02", Standard),
        ("99.98", Standard),
    ] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.pay().transactions[0].amount = eur(psp_amount);
        let d = s.decide();
        assert_eq!(d.errors().count(), 0, "{psp_amount} {mode:?}");
        assert_eq!(d.notes.len(), 1);
        assert!(
            d.notes[0].contains("rounding difference") && d.notes[0].contains(psp_amount),
            "{:?}",
            d.notes
        );
        match mode {
            Expert | Mode::Link => assert_eq!(purposes(&d), [P::Release]),
            Standard => {
                assert_eq!(purposes(&d), [P::CaptureOrder]);
                assert_eq!(
                    d.plans[0].psp,
                    capture(eur(psp_amount)),
                    "the whole authorization"
                );
            }
        }
    }
}

#[test]
fn spec_3_1_4_amount_mismatch_releases_with_shipping_lock_and_error() {
    for mode in [Standard, Expert] {
        for psp_amount in ["99.97", "100.03", "10.00"] {
            let mut s = S::new(PM::Card, mode, LINES);
            s.pay().transactions[0].amount = eur(psp_amount);
            let d = s.decide();
            assert_eq!(
                purposes(&d),
                [P::ReleaseLocked, P::Problem],
                "{mode:?} {psp_amount}"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [ErpWrite::SetShippingLock, ErpWrite::Release],
                "lock before release"
            );
            assert_eq!(flags(&d), [(Severity::Error, "authorization_check")]);
            assert!(d.flags[0].message.contains("amount mismatch"));
            no_money(&d);
            s.insert(&d);
            s.complete_all();
            assert!(s.order.shipping_lock && s.order.status == OrderStatus::Open);
        }
    }
}

#[test]
fn spec_3_1_4_rejected_payments_release_with_lock() {
    type Spoil = fn(&mut S);
    let cases: [(&str, Spoil); 7] = [
        ("cancelled", |s| s.pay().state = PaymentState::Canceled),
        ("review", |s| s.pay().state = PaymentState::PaymentReview),
        ("chargeback", |s| s.pay().state = PaymentState::Chargeback),
        ("authorization failed", |s| {
            s.pay().transactions[0].status = TxStatus::Error
        }),
        ("no authorization", |s| s.pay().transactions.clear()),
        ("currency", |s| {
            let p = s.pay();
            p.currency = Currency::JPY;
            p.transactions[0].amount = Money::from_minor(100, Currency::JPY);
        }),
        ("no payment id", |s| s.order.psp_payment_id = None),
    ];
    for mode in [Standard, Expert] {
        for (what, spoil) in cases {
            let mut s = S::new(PM::Card, mode, LINES);
            spoil(&mut s);
            let d = s.decide();
            assert_eq!(
                purposes(&d),
                [P::ReleaseLocked, P::Problem],
                "{what} {mode:?}"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [ErpWrite::SetShippingLock, ErpWrite::Release]
            );
            assert_eq!(
                flags(&d),
                [(Severity::Error, "authorization_check")],
                "{what}"
            );
            no_money(&d);
        }
    }
}

#[test]
fn spec_3_1_4_failed_capture_before_release_releases_with_lock() {
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Failed);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::ReleaseLocked, P::Problem, P::Problem]);
    assert_eq!(
        writes(&d.plans[0]),
        [ErpWrite::SetShippingLock, ErpWrite::Release]
    );
    let codes: Vec<_> = d.errors().map(|f| f.code.as_str()).collect();
    assert_eq!(
        codes,
        ["authorization_check", "op_failed:capture_order@order:1001"]
    );
    no_money(&d);
}

#[test]
fn spec_3_1_5_manual_orders_are_ignored() {
    for mode in [Standard, Expert] {
        for status in [OrderStatus::Hold, OrderStatus::Open, OrderStatus::Closed] {
            for pid in [None, Some(String::new())] {
                let mut s = S::new(PM::Card, mode, LINES);
                s.order.shop_order_no = "P1001".into();
                s.order.psp_payment_id = pid;
                s.order.status = status;
                s.cancel(&["L3"], STO);
                s.credit("C1", None, "5.00");
                assert_eq!(idle(s.decide()), Decision::default(), "{mode:?} {status:?}");
                s.psp = None;
                assert_eq!(idle(s.decide()), Decision::default());
                // even a failed operation in its ledger raises nothing
                let mut op = Operation::new(
                    &key(),
                    Plan {
                        doc_kind: DocKind::Order,
                        doc_id: "1001".into(),
                        purpose: P::Release,
                        psp: None,
                        erp: vec![],
                    },
                    now(),
                );
                op.status = OpStatus::Failed;
                s.ledger.push(op);
                assert_eq!(idle(s.decide()), Decision::default());
            }
        }
    }
    // "P" + a different number is not a manual order: no payment id is an error
    let mut s = S::new(PM::Card, Expert, LINES);
    s.order.shop_order_no = "P9999".into();
    s.order.psp_payment_id = None;
    assert_eq!(
        flags(&s.decide()),
        [(Severity::Error, "authorization_check")]
    );
}

#[test]
fn spec_3_1_unreadable_psp_payment_is_a_hint_and_decides_nothing() {
    let mut s = S::new(PM::Card, Standard, LINES);
    s.psp = None;
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "psp_unavailable")]);
}
