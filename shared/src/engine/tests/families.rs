//! Engine tests of behaviour.md §3.5a: the method families.

use super::*;

#[test]
fn spec_3_5a_method_families() {
    use MethodFamily as F;
    for m in ALL_METHODS {
        let expected = match m {
            PM::Card | PM::ApplePay | PM::Paypal => F::AuthorizeCapture,
            PM::Sofort | PM::Eps | PM::Ideal | PM::Giropay | PM::Alipay | PM::Przelewy24 => {
                F::ChargedInShop
            }
            PM::Prepayment => F::Prepayment,
            PM::Invoice | PM::InvoiceSecured => F::InvoiceLegacy,
            PM::PaylaterInvoice | PM::InvoicePaylater => F::PaylaterInvoice,
            PM::PaylaterInstallment | PM::PaylaterDirectDebit | PM::SepaDirectDebitSecured => {
                F::PaylaterDebit
            }
        };
        assert_eq!(
            S::new(m, Expert, LINES).psp.unwrap().family(),
            expected,
            "{m:?}"
        );
    }
    // PayPal / card charged in the shop behave as "charged in the shop"
    for m in [PM::Paypal, PM::Card, PM::ApplePay] {
        let mut s = S::new(m, Standard, LINES);
        s.psp = Some(payment(m, TxKind::Charge, TxStatus::Success, eur("100.00")));
        assert_eq!(
            s.psp.as_ref().unwrap().family(),
            MethodFamily::ChargedInShop
        );
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{m:?}: no capture in any mode");
    }
}

#[test]
fn spec_3_5a_release_on_import_per_family_and_mode() {
    for m in ALL_METHODS {
        for mode in [Standard, Expert] {
            let d = S::new(m, mode, LINES).decide();
            let (expected, call) = match (m.base_family(), mode) {
                (MethodFamily::AuthorizeCapture, Standard) => {
                    (P::CaptureOrder, capture(eur("100.00")))
                }
                (MethodFamily::Prepayment, _) => (P::ReleasePrepayment, None),
                _ => (P::Release, None),
            };
            assert_eq!(purposes(&d), [expected], "{m:?} {mode:?}");
            assert_eq!(d.plans[0].psp, call);
            assert!(d.flags.is_empty(), "{m:?}");
        }
    }
}

#[test]
fn spec_3_5a_mode_has_no_effect_outside_authorize_capture() {
    for m in ALL_METHODS
        .into_iter()
        .filter(|m| m.base_family() != MethodFamily::AuthorizeCapture)
    {
        // a full life: release, receipt, partial delivery, cancellation, close, credit note
        let mut s = S::new(m, Standard, LINES);
        let mut seen = vec![];
        let round = |s: &mut S, seen: &mut Vec<Purpose>| {
            let d = s.decide_any_mode();
            seen.extend(purposes(&d));
            s.insert(&d);
            s.complete_all();
        };
        round(&mut s, &mut seen);
        if matches!(m, PM::Prepayment | PM::Invoice | PM::InvoiceSecured) {
            s.receive("100.00");
        }
        round(&mut s, &mut seen);
        s.invoice("R1", "60.00", &["L1"]);
        round(&mut s, &mut seen);
        s.cancel(&["L2"], STO);
        round(&mut s, &mut seen);
        s.order.status = OrderStatus::Closed;
        round(&mut s, &mut seen);
        round(&mut s, &mut seen);
        s.credit("C1", Some("R1"), "10.00");
        round(&mut s, &mut seen);
        round(&mut s, &mut seen);
        assert!(seen.contains(&P::RefundCredit), "{m:?}: {seen:?}");
        // the same family, whole order cancelled on HOLD
        let mut s = S::new(m, Expert, LINES);
        s.cancel(&["L1", "L2", "L3"], STO);
        round(&mut s, &mut seen);
    }
}

#[test]
fn spec_3_5a_shipment_and_booking_per_family() {
    // (method, mode, order CLOSED?, expected purpose for invoice R1 of 60.00, capture?)
    let rows = [
        (PM::Card, Expert, false, P::CaptureInvoice, true),
        (PM::Card, Standard, false, P::BookInvoice, false),
        (PM::Sofort, Expert, false, P::BookInvoice, false),
        (PM::Prepayment, Expert, true, P::BookInvoice, false),
        (PM::Invoice, Expert, true, P::BookInvoice, false),
        (PM::InvoiceSecured, Expert, false, P::Shipment, false),
        (
            PM::PaylaterInvoice,
            Standard,
            false,
            P::CaptureInvoice,
            true,
        ),
        (
            PM::PaylaterInstallment,
            Standard,
            false,
            P::CaptureInvoice,
            true,
        ),
    ];
    for (m, mode, closed, expected, captures) in rows {
        let mut s = S::new(m, mode, LINES);
        if m == PM::Prepayment {
            s.receive("100.00");
        }
        let mut s = s.released();
        s.invoice("R1", "60.00", &["L1"]);
        if closed {
            s.order.status = OrderStatus::Closed;
        }
        let d = s.decide();
        assert_eq!(purposes(&d), [expected], "{m:?} {mode:?}");
        assert_eq!(
            d.plans[0].psp.is_some() && expected != P::Shipment,
            captures
        );
        if expected != P::Shipment {
            assert_eq!(writes(&d.plans[0]), [mark("R1", eur("60.00"))], "{m:?}");
        }
        if captures {
            assert_eq!(d.plans[0].psp, capture(eur("60.00")));
        }
    }
}
