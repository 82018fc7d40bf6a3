//! Engine tests of behaviour.md §3.5: credit notes and returns.

use super::*;

/// An order of each family with invoice R1 (60.00) captured / booked through paybridge.
fn invoiced(method: PM, mode: Mode) -> S {
    let mut s = S::new(method, mode, LINES);
    if method == PM::Prepayment {
        s.receive("100.00");
    }
    let mut s = s.released();
    s.invoice("R1", "60.00", &["L1"]);
    if matches!(method, PM::Prepayment | PM::Invoice) {
        s.order.status = OrderStatus::Closed;
    }
    s.settle();
    if method == PM::Invoice {
        s.receive("100.00");
    }
    assert!(s.order.invoices[0].captured, "{method:?} {mode:?}");
    s
}

#[test]
fn spec_3_5_credit_note_refunded_with_reason_return_and_negative_booking() {
    let setups = [
        (PM::Card, Standard),
        (PM::Card, Expert),
        (PM::ApplePay, Expert),
        (PM::Sofort, Expert),
        (PM::Prepayment, Standard),
        (PM::Invoice, Standard),
        (PM::PaylaterInvoice, Standard),
        (PM::PaylaterDirectDebit, Expert),
    ];
    for (method, mode) in setups {
        let mut s = invoiced(method, mode);
        s.credit("C1", Some("R1"), "20.00");
        let d = s.decide();
        assert_eq!(purposes(&d), [P::RefundCredit], "{method:?} {mode:?}");
        let p = &d.plans[0];
        assert_eq!((p.doc_kind, p.doc_id.as_str()), (DocKind::CreditNote, "C1"));
        assert_eq!(p.psp, refund(eur("20.00"), RefundReason::Return));
        assert_eq!(
            writes(p),
            [ErpWrite::ManualBooking {
                amount: eur("-20.00"),
                event_code: RETURN_EVENT.into(),
                document: "C1".into()
            }]
        );
        assert!(d.flags.is_empty());
        s.insert(&d);
        s.complete_all();
        assert_eq!(
            idle(s.decide()),
            Decision::default(),
            "{method:?}: refunded once"
        );
        // an unlinked goodwill credit is refunded too
        s.credit("C2", None, "5.00");
        assert_eq!(
            s.decide().plans[0].psp,
            refund(eur("5.00"), RefundReason::Return)
        );
    }
}

#[test]
fn spec_3_5_settled_credit_note_is_an_error_and_not_refunded() {
    for mode in [Standard, Expert] {
        let mut s = invoiced(PM::Card, mode);
        s.credit("C1", Some("R1"), "20.00");
        s.order.credit_notes[0].settled = true;
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [(Severity::Error, "credit_settled:C1")],
            "{mode:?}"
        );
        assert_eq!(purposes(&d), [P::Problem]);
    }
}

#[test]
fn spec_3_5_return_against_an_invoice_captured_before_paybridge_is_an_error() {
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.order.status = OrderStatus::Open;
        // captured by hand in the PSP portal and marked paid in the ERP before paybridge ran
        s.pay()
            .transactions
            .push(tx(TxKind::Charge, TxStatus::Success, eur("60.00")));
        s.invoice("R1", "60.00", &["L1"]);
        s.order.invoices[0].captured = true;
        s.credit("C1", Some("R1"), "20.00");
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [
                (Severity::Hint, "captured_elsewhere:R1"),
                (Severity::Error, "foreign_capture:C1")
            ],
            "{mode:?}: the skipped invoice is named, the credit refused"
        );
        assert_eq!(purposes(&d), [P::Problem]);
        no_money(&d);
    }
}

#[test]
fn spec_3_5_credit_note_exceeding_the_captured_amount_is_an_error() {
    for (mode, amount) in [(Standard, "100.01"), (Expert, "60.01")] {
        let mut s = invoiced(PM::Card, mode);
        s.credit("C1", Some("R1"), amount);
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [(Severity::Error, "refund_exceeds:C1")],
            "{mode:?}"
        );
        assert_eq!(purposes(&d), [P::Problem]);
        no_money(&d);
    }
}

#[test]
fn spec_3_5_credit_note_waits_for_money_still_on_its_way() {
    // expert: its invoice's capture is in progress
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "refund_waits:C1")]);
    s.complete_all();
    assert_eq!(purposes(&s.decide()), [P::RefundCredit]);
    // prepayment: the customer has not paid yet
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.credit("C1", None, "20.00");
    let d = s.decide_any_mode();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "refund_waits:C1")]);
}

#[test]
fn spec_3_5_credit_note_arriving_with_its_invoice_waits_without_error() {
    // Invoice and credit note appear in the same poll (e.g. after the ERP quiet hours): the
    // capture planned in this very decision is money on its way, not a reason for an error mail.
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(d.errors().count(), 0, "{:?}", d.flags);
    s.insert(&d);
    s.complete_all();
    assert_eq!(purposes(&s.decide()), [P::RefundCredit]);
}
