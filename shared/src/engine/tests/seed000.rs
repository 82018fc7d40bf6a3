//! Engine tests of issue 12 ("seed 000 to the letter"), named after the behaviour.md sections
//! they belong to: transfer details for the legacy invoice types (§3.2 / §3.1), authorization
//! lifetime (§3.3, §3.8), pending payments that stay pending (§3.1), hands-off orders (§3.9,
//! §4), invoices captured before or outside paybridge (§3.5, §3.9) and no silent skips (§3.3).

use super::*;
use chrono::Duration;

fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// The shop's authorization was made at `at` (the PSP's transaction date).
fn authorized_at(s: &mut S, at: DateTime<Utc>) {
    s.pay().transactions[0].at = Some(at);
}

fn codes(d: &Decision) -> Vec<&str> {
    d.flags.iter().map(|f| f.code.as_str()).collect()
}

fn flag<'d>(d: &'d Decision, code: &str) -> &'d Flag {
    d.flags
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:#?}", d.flags))
}

/// The text of the plan's ERP comment.
fn comment(p: &Plan) -> &str {
    p.erp
        .iter()
        .find_map(|w| match w {
            ErpWrite::Comment { text } => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no comment in {p:#?}"))
}

// ------------------------------------------------------------ item 1: transfer details

#[test]
fn spec_3_2_invoice_and_invoice_secured_are_released_with_the_transfer_details() {
    for method in [PM::Invoice, PM::InvoiceSecured] {
        let s = S::new(method, Expert, LINES);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        // the customer-service fields as for prepayment, but no shipping lock: the customer
        // pays after delivery
        assert_eq!(
            writes(&d.plans[0]),
            [
                ErpWrite::TransferDetails { details: bank() },
                ErpWrite::Release
            ],
            "{method:?}"
        );
        assert!(comment(&d.plans[0]).contains("transfer details"));
        assert!(d.flags.is_empty(), "{method:?}: {:?}", d.flags);
        no_money(&d);
    }
}

#[test]
fn spec_3_2_invoice_without_bank_details_is_released_with_a_hint() {
    let mut s = S::new(PM::InvoiceSecured, Expert, LINES);
    s.pay().bank_details = None;
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::Release]);
    assert_eq!(flags(&d), [(Severity::Hint, "no_bank_details")]);
}

#[test]
fn spec_3_2_invoice_paid_before_import_is_released_without_transfer_details() {
    let mut s = S::new(PM::Invoice, Expert, LINES);
    s.receive("100.00");
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::Release]);
    assert!(d.flags.is_empty());
}

// ------------------------------------------------------- item 2: authorization lifetime

#[test]
fn spec_3_3_default_validity_per_family() {
    use crate::engine::authorization::default_validity_days as v;
    assert_eq!(v(PM::Card, MethodFamily::AuthorizeCapture), Some(7));
    assert_eq!(v(PM::ApplePay, MethodFamily::AuthorizeCapture), Some(7));
    assert_eq!(v(PM::Paypal, MethodFamily::AuthorizeCapture), Some(29));
    assert_eq!(
        v(PM::PaylaterInvoice, MethodFamily::PaylaterInvoice),
        Some(28)
    );
    assert_eq!(
        v(PM::PaylaterInstallment, MethodFamily::PaylaterDebit),
        Some(28)
    );
    for (m, f) in [
        (PM::Sofort, MethodFamily::ChargedInShop),
        (PM::Card, MethodFamily::ChargedInShop),
        (PM::Prepayment, MethodFamily::Prepayment),
        (PM::InvoiceSecured, MethodFamily::InvoiceLegacy),
    ] {
        assert_eq!(v(m, f), None, "{m:?} holds no authorization");
    }
}

#[test]
fn spec_3_3_fresh_authorization_asks_to_be_rechecked_when_its_hint_is_due() {
    let mut s = S::new(PM::Card, Expert, LINES);
    let at = now() - days(1);
    authorized_at(&mut s, at);
    let mut s = s.released();
    let d = s.decide();
    assert!(d.plans.is_empty() && d.flags.is_empty(), "{d:#?}");
    // 7 days, the hint in the last quarter (1 day 18 h before the end)
    assert_eq!(d.recheck_at, Some(at + days(7) - Duration::hours(42)));
    // at that moment the hint shows and the next recheck is the expiry itself
    s.at = at + days(7) - Duration::hours(42);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Hint, "authorization_expiring")]);
    assert!(d.plans.is_empty(), "a hint writes nothing");
    assert_eq!(d.recheck_at, Some(at + days(7)));
    let text = &flag(&d, "authorization_expiring").message;
    assert!(
        text.contains("2023-11-20") && text.contains("100.00"),
        "names the expiry day and the open amount: {text}"
    );
}

#[test]
fn spec_3_3_authorization_in_its_last_quarter_still_captures_with_a_hint() {
    let mut s = S::new(PM::Card, Expert, LINES);
    authorized_at(&mut s, now() - days(6));
    let mut s = s.released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(d.plans[0].psp, capture(eur("60.00")));
    assert_eq!(flags(&d), [(Severity::Hint, "authorization_expiring")]);
}

#[test]
fn spec_3_3_expired_authorization_captures_nothing_and_says_why() {
    let mut s = S::new(PM::Card, Expert, LINES);
    authorized_at(&mut s, now() - days(1));
    let mut s = s.released();
    s.at = now() + days(7);
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    no_money(&d);
    assert_eq!(flags(&d), [(Severity::Error, "authorization_expired")]);
    let text = &flag(&d, "authorization_expired").message;
    assert!(
        text.contains("expired on 2023-11-20")
            && text.contains("100.00 EUR not captured")
            && text.contains("no capture sent for invoice R1"),
        "{text}"
    );
    // the error's one comment, nothing else; asked again, nothing new
    assert_eq!(purposes(&d), [P::Problem]);
    assert!(comment(&d.plans[0]).contains("ERROR the authorization"));
    s.insert(&d);
    s.complete_all();
    let again = s.decide();
    assert!(again.plans.is_empty(), "{again:#?}");
    assert_eq!(again.recheck_at, None, "expired: nothing more to wait for");
}

#[test]
fn spec_3_3_paylater_invoice_must_be_charged_before_its_authorization_expires() {
    let mut s = S::new(PM::PaylaterInvoice, Expert, LINES).released();
    authorized_at(&mut s, now() - days(28));
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    let d = s.decide_any_mode();
    no_money(&d);
    assert_eq!(flags(&d), [(Severity::Error, "authorization_expired")]);
    // 27 days old: the charge that starts the payment term still goes out, with the hint
    authorized_at(&mut s, now() - days(27));
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(flags(&d), [(Severity::Hint, "authorization_expiring")]);
}

#[test]
fn spec_3_3_configured_validity_overrides_the_default() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.cfg.authorization_validity_days = Some(30);
    authorized_at(&mut s, now() - days(10));
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert!(d.flags.is_empty(), "{:?}", d.flags);
    assert_eq!(
        d.recheck_at,
        Some(now() - days(10) + days(30) - Duration::hours(180))
    );
}

#[test]
fn spec_3_3_without_a_psp_time_the_age_counts_from_first_seen() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.first_seen = now() - days(8);
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    no_money(&d);
    assert_eq!(codes(&d), ["authorization_expired"]);
}

#[test]
fn spec_3_3_nothing_left_to_capture_has_no_lifetime() {
    // standard mode captured everything before the release: the authorization's age is moot
    let mut s = S::new(PM::Card, Standard, LINES);
    authorized_at(&mut s, now() - days(1));
    let mut s = s.released();
    s.at = now() + days(100);
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    let d = s.decide();
    assert!(d.flags.is_empty(), "{:?}", d.flags);
    assert_eq!(purposes(&d), [P::BookInvoice]);
    // families that hold no authorization never age
    for method in [PM::Sofort, PM::Prepayment, PM::InvoiceSecured] {
        let mut s = S::new(method, Expert, LINES).released();
        authorized_at(&mut s, now() - days(400));
        let d = s.decide();
        assert!(d.flags.is_empty(), "{method:?}: {:?}", d.flags);
        assert_eq!(d.recheck_at, None, "{method:?}");
    }
}

#[test]
fn spec_3_8_authorization_expired_before_the_release_is_released_with_lock_and_error() {
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        authorized_at(&mut s, now() - days(8));
        let d = s.decide();
        assert_eq!(purposes(&d), [P::ReleaseLocked, P::Problem], "{mode:?}");
        no_money(&d); // standard mode does not try the capture the PSP would refuse
        assert_eq!(
            writes(&d.plans[0]),
            [ErpWrite::SetShippingLock, ErpWrite::Release]
        );
        let text = &flag(&d, "authorization_check").message;
        assert!(
            text.contains("expired on 2023-11-13") && text.contains("100.00"),
            "{text}"
        );
    }
}

// ------------------------------------------------------------ item 3: pending payments

#[test]
fn spec_3_1_pending_payment_is_rechecked_at_its_deadline_then_becomes_an_error() {
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].status = TxStatus::Pending;
    s.first_seen = now() - Duration::hours(23);
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "pending")]);
    assert_eq!(d.recheck_at, Some(now() + Duration::hours(1)));
    // 24 h after paybridge first saw it: an error with its one comment, still HOLD
    s.at = now() + Duration::hours(1);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "pending_too_long")]);
    assert_eq!(purposes(&d), [P::Problem], "no release");
    let text = &flag(&d, "pending_too_long").message;
    assert!(
        text.contains("pending since 2023-11-13 23:13 UTC") && text.contains("24 h"),
        "{text}"
    );
    s.insert(&d);
    s.complete_all();
    assert!(s.decide().plans.is_empty(), "the error is commented once");
    assert_eq!(s.order.status, OrderStatus::Hold);
}

#[test]
fn spec_3_1_pending_error_after_hours_is_configurable() {
    let mut s = S::new(PM::PaylaterInvoice, Expert, LINES);
    s.pay().transactions[0].status = TxStatus::Pending;
    s.cfg.pending_error_after_hours = 2;
    s.first_seen = now() - Duration::hours(2);
    assert_eq!(codes(&s.decide()), ["pending_too_long"]);
    s.first_seen = now() - Duration::hours(1);
    let d = s.decide();
    assert_eq!(codes(&d), ["pending"]);
    assert_eq!(d.recheck_at, Some(now() + Duration::hours(1)));
}

// ---------------------------------------------------------------- item 4: hands-off

/// An expert card order, released, with invoice R1 shipped and not yet captured.
fn shipped() -> S {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s
}

#[test]
fn spec_3_9_hands_off_order_plans_nothing_but_its_comment_and_shows_a_hint() {
    let mut s = shipped();
    let since = now() - Duration::minutes(5);
    s.hands_off = Some(since);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::HandsOff], "no capture for R1");
    no_money(&d);
    assert_eq!(d.plans[0].doc_id, format!("1001:{}", since.timestamp()));
    assert!(comment(&d.plans[0]).contains("taken out of automation"));
    assert_eq!(flags(&d), [(Severity::Hint, "hands_off")]);
    assert!(
        flag(&d, "hands_off")
            .message
            .contains("2023-11-14 22:08 UTC")
    );
    // asked again (any number of times): the switch is commented once
    s.insert(&d);
    s.complete_all();
    let again = s.decide();
    assert!(again.plans.is_empty(), "{again:#?}");
    assert_eq!(flags(&again), [(Severity::Hint, "hands_off")]);
    // even errors the order would have are not raised while it is out
    s.invoice("R2", "900.00", &["L2"]);
    assert_eq!(codes(&s.decide()), ["hands_off"]);
}

#[test]
fn spec_3_9_back_on_comments_once_and_plans_what_the_order_needs() {
    let mut s = shipped();
    s.hands_off = Some(now());
    s.step();
    s.hands_off = None;
    let d = s.decide();
    assert_eq!(purposes(&d), [P::HandsOn, P::CaptureInvoice]);
    assert_eq!(d.plans[0].doc_id, format!("1001:{}", now().timestamp()));
    assert!(comment(&d.plans[0]).contains("back in automation"));
    assert_eq!(d.plans[1].psp, capture(eur("60.00")));
    assert!(d.flags.is_empty());
    s.settle();
    // taken out and put back a second time: a second pair of comments, nothing moved twice
    s.hands_off = Some(now() + Duration::hours(1));
    assert_eq!(purposes(&s.step()), [P::HandsOff]);
    s.hands_off = None;
    assert_eq!(purposes(&s.step()), [P::HandsOn]);
    let captures = s
        .ledger
        .iter()
        .filter(|o| o.plan.purpose == P::CaptureInvoice)
        .count();
    assert_eq!(captures, 1);
}

#[test]
fn spec_3_9_operation_cancelled_while_hands_off_is_planned_again_when_back_on() {
    let mut s = shipped();
    let d = s.decide();
    s.insert(&d); // the capture is planned, not started …
    s.hands_off = Some(now());
    s.set_status(P::CaptureInvoice, OpStatus::Cancelled); // … and cancelled by the switch
    s.step();
    s.hands_off = None;
    let d = s.decide();
    // a cancelled operation counts as never planned: the same capture is planned again
    assert_eq!(purposes(&d), [P::HandsOn, P::CaptureInvoice]);
    let cancelled = s
        .ledger
        .iter()
        .find(|o| o.plan.purpose == P::CaptureInvoice)
        .expect("the cancelled op");
    assert_eq!(
        Operation::new(&key(), d.plans[1].clone(), now()).id,
        cancelled.id
    );
}

#[test]
fn spec_4_hands_off_switch_comments_are_one_per_switch() {
    let mut s = shipped();
    s.hands_off = Some(now());
    let d = s.decide();
    let n = d
        .plans
        .iter()
        .flat_map(|p| &p.erp)
        .filter(|w| matches!(w, ErpWrite::Comment { .. }))
        .count();
    assert_eq!(n, 1, "one comment says the order is out");
    assert!(
        writes(&d.plans[0]).is_empty(),
        "and nothing else is written"
    );
}

// ---------------------------------------------- items 5 and 6: captured outside paybridge

/// A card order (expert) whose first invoice R1 (L1, 60.00) was captured in the PSP portal
/// and marked paid in the ERP before paybridge handled it.
fn foreign_r1() -> S {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.pay()
        .transactions
        .push(tx(TxKind::Charge, TxStatus::Success, eur("60.00")));
    s.invoice("R1", "60.00", &["L1"]);
    s.order.invoices[0].captured = true;
    s
}

#[test]
fn spec_3_3_invoice_already_paid_in_the_erp_is_skipped_with_a_hint_naming_it() {
    let mut s = foreign_r1();
    s.invoice("R2", "30.00", &["L2"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice], "R2 only");
    assert_eq!(d.plans[0].doc_id, "R2");
    assert_eq!(flags(&d), [(Severity::Hint, "captured_elsewhere:R1")]);
    assert!(
        flag(&d, "captured_elsewhere:R1")
            .message
            .contains("invoice R1 is marked paid in the ERP already")
    );
}

#[test]
fn spec_3_9_expert_closes_the_payment_after_the_last_delivery_despite_a_foreign_invoice() {
    let mut s = foreign_r1();
    s.invoice("R2", "30.00", &["L2"]);
    s.cancel(&["L3"], STO);
    s.settle();
    s.order.status = OrderStatus::Closed;
    let d = s.decide();
    assert_eq!(purposes(&d), [P::ClosePayment]);
    assert_eq!(
        d.plans[0].psp,
        reverse(eur("10.00")),
        "100 − 60 foreign − 30 ours"
    );
    assert_eq!(codes(&d), ["captured_elsewhere:R1"]);
}

#[test]
fn spec_3_5_credit_note_without_its_invoice_is_refused_when_the_money_was_captured_before_paybridge()
 {
    let mut s = foreign_r1();
    s.credit("C1", None, "20.00");
    let d = s.decide();
    no_money(&d);
    assert_eq!(
        flags(&d),
        [
            (Severity::Hint, "captured_elsewhere:R1"),
            (Severity::Error, "foreign_capture:C1")
        ]
    );
    let text = &flag(&d, "foreign_capture:C1").message;
    assert!(
        text.contains("invoice R1 (the credit note names no invoice)"),
        "{text}"
    );
}

#[test]
fn spec_3_5_credit_note_within_paybridges_own_captures_is_refunded_next_to_a_foreign_invoice() {
    let mut s = foreign_r1();
    s.invoice("R2", "30.00", &["L2"]);
    s.settle(); // R2 captured by paybridge
    s.credit("C1", None, "30.00");
    let d = s.decide();
    assert_eq!(purposes(&d), [P::RefundCredit]);
    assert_eq!(
        d.plans[0].psp,
        refund(eur("30.00"), RefundReason::Return),
        "paybridge's own capture covers it"
    );
    // one cent more than paybridge captured and did not refund: refused
    let mut s2 = foreign_r1();
    s2.invoice("R2", "30.00", &["L2"]);
    s2.settle();
    s2.credit("C1", None, "30.01");
    assert_eq!(
        codes(&s2.decide()),
        ["captured_elsewhere:R1", "foreign_capture:C1"]
    );
}

#[test]
fn spec_3_5_psp_charges_beyond_paybridges_captures_count_as_captured_outside() {
    // nothing marked paid in the ERP, but the PSP shows a charge paybridge never made
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.pay()
        .transactions
        .push(tx(TxKind::Charge, TxStatus::Success, eur("40.00")));
    s.credit("C1", None, "10.00");
    let d = s.decide();
    no_money(&d);
    let text = &flag(&d, "foreign_capture:C1").message;
    assert!(text.contains("a capture made outside paybridge"), "{text}");
}

#[test]
fn spec_3_9_aggregated_line_cancellation_cancelled_while_hands_off_is_planned_again() {
    // faults harness, seed 2026 lifecycle 1282: the aggregate of cancelled lines was cancelled
    // by the switch and its lines counted as covered, so the refund was never made
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.cancel(&["L3"], NLB);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CancelLines]);
    s.insert(&d);
    s.hands_off = Some(now());
    s.set_status(P::CancelLines, OpStatus::Cancelled);
    s.step();
    s.hands_off = None;
    let d = s.decide();
    assert_eq!(purposes(&d), [P::HandsOn, P::CancelLines]);
    assert_eq!(d.plans[1].doc_id, "L3");
    assert_eq!(d.plans[1].psp, refund(eur("10.00"), RefundReason::Cancel));
}
