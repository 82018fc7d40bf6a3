//! Engine tests of behaviour.md §3.3: capture and booking per invoice.

use super::*;

#[test]
fn spec_3_3_expert_capture_marks_the_invoice_captured_with_the_invoice_event_in_one_write() {
    // the invoice includes freight (50.00 goods + 4.95 freight): that is the capture amount
    let mut s = S::new(
        PM::Card,
        Expert,
        &[("L1", "50.00"), ("FREIGHT", "4.95"), ("L2", "45.05")],
    )
    .released();
    s.invoice("R1", "54.95", &["L1", "FREIGHT"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    let p = &d.plans[0];
    assert_eq!((p.doc_kind, p.doc_id.as_str()), (DocKind::Invoice, "R1"));
    assert_eq!(p.psp, capture(eur("54.95")));
    assert_eq!(
        writes(p),
        [mark("R1", eur("54.95"))],
        "no manual booking for the same money"
    );
    assert!(d.flags.is_empty());
}

#[test]
fn spec_3_3_standard_books_invoices_only_after_the_capture() {
    // released without capture (the capture before release failed: locked release)
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Failed);
    s.settle();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    assert!(
        !purposes(&d).contains(&P::BookInvoice),
        "nothing was captured: no booking"
    );
    no_money(&d);
}

#[test]
fn spec_3_3_rounding_difference_against_the_invoice_is_absorbed_and_noted() {
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].amount = eur("99.99");
    let mut s = s.released();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(
        d.plans[0].psp,
        capture(eur("99.99")),
        "capped at the open authorization"
    );
    assert_eq!(
        writes(&d.plans[0]),
        [mark("R1", eur("100.00"))],
        "the invoice is paid in the ERP"
    );
    assert_eq!(d.notes.len(), 1);
    assert!(
        d.notes[0].contains("R1") && d.notes[0].contains("0.01"),
        "{:?}",
        d.notes
    );
}

#[test]
fn spec_3_3_invoice_exceeding_the_open_authorization_is_an_error() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.settle();
    s.invoice("R2", "40.03", &["L2", "L3"]);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "capture_exceeds:R2")]);
    assert_eq!(purposes(&d), [P::Problem]);
    // within the tolerance: capped and noted
    s.order.invoices[1].amount = eur("40.02");
    let d = s.decide();
    assert_eq!(d.plans[0].psp, capture(eur("40.00")));
    assert!(d.flags.is_empty());
}

#[test]
fn spec_3_3_invoice_waits_while_another_capture_is_in_progress() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.invoice("R2", "45.00", &["L2", "L3"]); // over the rest only once R1 is through
    let d = s.decide();
    assert_eq!(idle(d), Decision::default(), "waits silently for R1");
    s.complete_all();
    assert_eq!(
        flags(&s.decide()),
        [(Severity::Error, "capture_exceeds:R2")]
    );
}

#[test]
fn spec_3_3_failed_capture_is_flagged_with_one_comment() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureInvoice, OpStatus::Failed);
    let d = s.decide();
    assert_eq!(
        flags(&d),
        [(Severity::Error, "op_failed:capture_invoice@invoice:R1")]
    );
    assert!(d.flags[0].message.contains("declined"));
    assert_eq!(purposes(&d), [P::Problem]);
    let ErpWrite::Comment { text } = &d.plans[0].erp[0] else {
        panic!("comment expected")
    };
    assert!(text.contains("ERROR"), "{text}");
    s.insert(&d);
    let again = s.decide();
    assert_eq!(again.plans, [], "one comment per problem");
    assert_eq!(
        flags(&again),
        [(Severity::Error, "op_failed:capture_invoice@invoice:R1")],
        "stays an error"
    );
}

#[test]
fn spec_3_3_paylater_charges_each_invoice_in_any_mode() {
    for method in [
        PM::PaylaterInvoice,
        PM::InvoicePaylater,
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        s.insert(&d);
        s.complete_all();
        for (inv, amount, lines) in [
            ("R1", "30.00", &["L2"][..]),
            ("R2", "70.00", &["L1", "L3"][..]),
        ] {
            s.invoice(inv, amount, lines);
            let d = s.decide_any_mode();
            assert_eq!(purposes(&d), [P::CaptureInvoice], "{method:?} {inv}");
            assert_eq!(d.plans[0].doc_id, inv);
            assert_eq!(
                d.plans[0].psp,
                capture(eur(amount)),
                "the charge starts the payment term"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [mark(inv, eur(amount))],
                "booked on the charge"
            );
            s.insert(&d);
            s.complete_all();
        }
        assert_eq!(idle(s.decide_any_mode()), Decision::default());
    }
}

#[test]
fn spec_3_3_invoice_secured_reports_the_shipment_and_legacy_invoices_book_when_closed() {
    for method in [PM::InvoiceSecured, PM::Invoice] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(
            purposes(&d),
            [P::Release],
            "{method:?}: pending initial charge is fine"
        );
        s.insert(&d);
        s.complete_all();
        s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
        let d = s.decide_any_mode();
        if method == PM::InvoiceSecured {
            assert_eq!(purposes(&d), [P::Shipment]);
            assert_eq!(
                d.plans[0].psp,
                Some(PspCall::Shipment {
                    invoice_id: "R1".into()
                })
            );
        } else {
            assert_eq!(idle(d.clone()), Decision::default());
        }
        s.insert(&d);
        s.complete_all();
        s.order.status = OrderStatus::Closed;
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::BookInvoice]);
        assert_eq!(writes(&d.plans[0]), [mark("R1", eur("100.00"))]);
        no_money(&d);
    }
}

#[test]
fn spec_3_3_zero_and_three_decimal_currencies() {
    for (cur, lines, first, rest, tol_ok, tol_bad) in [
        (
            Currency::JPY,
            [("L1", "6000"), ("L2", "4000")],
            "6000",
            "4000",
            "10002",
            "10003",
        ),
        (
            Currency::KWD,
            [("L1", "12.345"), ("L2", "7.655")],
            "12.345",
            "7.655",
            "20.002",
            "20.003",
        ),
    ] {
        let m = |s: &str| Money::parse(s, cur).unwrap();
        // standard: the whole amount, exactly
        let s = S::in_currency(PM::Card, Standard, cur, &lines);
        assert_eq!(
            s.decide().plans[0].psp,
            capture(m(if cur == Currency::JPY {
                "10000"
            } else {
                "20.000"
            }))
        );
        // expert: per invoice, exactly
        let mut s = S::in_currency(PM::Card, Expert, cur, &lines).released();
        s.invoice("R1", first, &["L1"]);
        let d = s.step();
        assert_eq!(d.plans[0].psp, capture(m(first)), "{cur}");
        assert_eq!(
            writes(&d.plans[0]),
            [ErpWrite::MarkInvoiceCaptured {
                invoice_id: "R1".into(),
                event_code: INVOICE_EVENT.into(),
                amount: m(first)
            }]
        );
        s.cancel(&["L2"], STO);
        s.order.status = OrderStatus::Closed;
        assert_eq!(s.step().plans[0].psp, reverse(m(rest)));
        s.credit("C1", Some("R1"), first);
        let d = s.decide();
        assert_eq!(d.plans[0].psp, refund(m(first), RefundReason::Return));
        let neg = Money::zero(cur).checked_sub(m(first)).unwrap();
        assert_eq!(
            writes(&d.plans[0]),
            [ErpWrite::ManualBooking {
                amount: neg,
                event_code: RETURN_EVENT.into(),
                document: "C1".into()
            }]
        );
        // the tolerance counts minor units of the currency (2 = ¥2 / 0.002 KWD)
        let mut s = S::in_currency(PM::Card, Expert, cur, &lines);
        s.pay().transactions[0].amount = m(tol_ok);
        assert_eq!(purposes(&s.decide()), [P::Release], "{cur}");
        s.pay().transactions[0].amount = m(tol_bad);
        assert_eq!(
            purposes(&s.decide()),
            [P::ReleaseLocked, P::Problem],
            "{cur}"
        );
    }
}
