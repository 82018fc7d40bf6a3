//! Engine tests of behaviour.md §3.2: prepayment.

use super::*;

#[test]
fn spec_3_2_prepayment_before_receipt_released_with_lock_and_transfer_details() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::ReleasePrepayment]);
    assert_eq!(
        writes(&d.plans[0]),
        [
            ErpWrite::TransferDetails { details: bank() },
            ErpWrite::SetShippingLock,
            ErpWrite::Release
        ]
    );
    assert!(d.flags.is_empty());
    no_money(&d);
    s.insert(&d);
    s.complete_all();
    assert!(s.order.shipping_lock && s.order.status == OrderStatus::Open);
    assert_eq!(
        idle(s.decide_any_mode()),
        Decision::default(),
        "the lock stays until the money arrives"
    );
}

#[test]
fn spec_3_2_prepayment_receipt_clears_the_lock() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("100.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::ClearLock]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::ClearShippingLock]);
    no_money(&d);
    s.insert(&d);
    s.complete_all();
    assert!(!s.order.shipping_lock);
    assert_eq!(idle(s.decide_any_mode()), Decision::default());
}

#[test]
fn spec_3_2_prepayment_receipt_while_the_lock_is_being_set_clears_it_afterwards() {
    let mut s = S::new(PM::Prepayment, Expert, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::ReleasePrepayment, OpStatus::Running);
    s.order.status = OrderStatus::Open; // release written, lock not yet
    s.receive("100.00");
    assert_eq!(idle(s.decide()), Decision::default());
    s.complete(P::ReleasePrepayment);
    assert_eq!(purposes(&s.decide()), [P::ClearLock]);
}

#[test]
fn spec_3_2_prepayment_receipt_before_import_is_applied_on_import() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    s.receive("100.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(
        writes(&d.plans[0]),
        [ErpWrite::Release],
        "no lock, no transfer details"
    );
    s.insert(&d);
    s.complete_all();
    assert_eq!(
        idle(s.decide_any_mode()),
        Decision::default(),
        "no lock to clear"
    );
    assert!(!s.order.shipping_lock);
}

#[test]
fn spec_3_2_prepayment_partly_received_keeps_the_lock_with_a_hint() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("40.00");
    let d = s.decide_any_mode();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "partly_paid")]);
    s.receive("60.00");
    assert_eq!(purposes(&s.decide_any_mode()), [P::ClearLock]);
}

#[test]
fn spec_3_2_prepayment_booking_only_when_received_and_closed() {
    for received in [false, true] {
        for status in [OrderStatus::Open, OrderStatus::Closed] {
            let mut s = S::new(PM::Prepayment, Standard, LINES).released();
            if received {
                s.receive("100.00");
                s.settle();
            }
            s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
            s.order.status = status;
            let d = s.decide_any_mode();
            let what = format!("received {received}, {status:?}");
            match (received, status) {
                (true, OrderStatus::Closed) => {
                    assert_eq!(purposes(&d), [P::BookInvoice], "{what}");
                    assert_eq!(writes(&d.plans[0]), [mark("R1", eur("100.00"))]);
                    assert!(d.flags.is_empty());
                }
                (true, _) => assert_eq!(idle(d.clone()), Decision::default(), "{what}"),
                (false, _) => {
                    // shipped before receipt: no booking, manual work flagged
                    assert_eq!(
                        flags(&d),
                        [(Severity::Error, "shipped_before_receipt:R1")],
                        "{what}"
                    );
                    assert_eq!(purposes(&d), [P::Problem]);
                }
            }
            no_money(&d);
        }
    }
}

/// Found by the fault simulation (`faults --seed 42 --only 2875`): the PSP payment is for less
/// than the order; the customer pays what the PSP asked, the order ships and closes. Booking the
/// invoice would show more received than arrived: flag it instead.
#[test]
fn spec_3_2_prepayment_invoices_above_the_money_received_are_not_booked() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    s.pay().transactions[0].amount = eur("90.00");
    let mut s = s.released();
    s.receive("90.00");
    s.settle();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    s.order.status = OrderStatus::Closed;
    let d = s.decide_any_mode();
    assert!(
        !purposes(&d).contains(&P::BookInvoice),
        "booked more than received: {d:?}"
    );
    assert!(
        flags(&d).contains(&(Severity::Error, "invoices_exceed_received")),
        "{:?}",
        d.flags
    );
    no_money(&d);
    // What arrived is booked when the invoice matches it (the operator corrected the invoice).
    s.order.invoices[0].amount = eur("90.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(writes(&d.plans[0]), [mark("R1", eur("90.00"))]);
}

#[test]
fn spec_3_2_prepayment_shipped_before_receipt_is_never_booked_automatically() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(flags(&d), [(Severity::Error, "shipped_before_receipt:R1")]);
    assert_eq!(s.decide().plans, [], "the error comment is written once");
    s.receive("100.00");
    let d = s.decide();
    // The lock is cleared, but the invoice is the operator's to book (they were told so).
    assert_eq!(purposes(&d), [P::ClearLock]);
    assert_eq!(flags(&d), [(Severity::Error, "shipped_before_receipt:R1")]);
}
