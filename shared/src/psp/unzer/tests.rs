//! Unit tests of the Unzer connector: host choice, reply classification, refund planning, and
//! no key in any debug output.

use super::refund::*;
use super::*;
use crate::money::Currency;

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

#[test]
fn host_by_prefix_and_loopback_only_http() {
    let s = Secret::new("s-priv-abc");
    let p = Secret::new("p-priv-abc");
    assert_eq!(
        api_base(None, &s).unwrap().as_str(),
        "https://sbx-api.unzer.com/"
    );
    assert_eq!(
        api_base(None, &p).unwrap().as_str(),
        "https://api.unzer.com/"
    );
    assert!(api_base(None, &Secret::new("x-priv-abc")).is_err());
    assert!(api_base(Some("http://127.0.0.1:8081"), &s).is_ok());
    assert!(api_base(Some("http://localhost:8081/"), &s).is_ok());
    assert!(api_base(Some("http://evil.example"), &s).is_err());
    assert!(api_base(Some("https://host.example/v1"), &s).is_err());
    let e = api_base(Some("http://evil.example"), &s).unwrap_err();
    assert!(!e.contains("s-priv-abc"));
}

#[test]
fn classify_maps_statuses() {
    let ok = r#"{"id":"s-chg-2","isSuccess":true,"isPending":false,"isError":false,"amount":"10.0000","currency":"EUR"}"#;
    assert_eq!(
        classify(StatusCode::OK, ok, Some(eur(1000)), "/p"),
        PspOutcome::Done {
            tx_id: "s-chg-2".into()
        }
    );
    assert!(matches!(
        classify(StatusCode::OK, ok, Some(eur(1001)), "/p"),
        PspOutcome::Unknown { .. }
    ));
    let usd = ok.replace("EUR", "USD");
    assert!(matches!(
        classify(StatusCode::OK, &usd, Some(eur(1000)), "/p"),
        PspOutcome::Unknown { .. }
    ));
    let err200 = r#"{"id":"s-err-1","isError":true,"errors":[{"code":"API.340.000.004","merchantMessage":"no","customerMessage":"x"}]}"#;
    assert_eq!(
        classify(StatusCode::OK, err200, Some(eur(1000)), "/p"),
        PspOutcome::Declined {
            code: "API.340.000.004".into(),
            message: "no".into()
        }
    );
    let auth =
        r#"{"isError":true,"errors":[{"code":"API.710.000.002","merchantMessage":"bad key"}]}"#;
    assert!(
        matches!(classify(StatusCode::UNAUTHORIZED, auth, None, "/p"), PspOutcome::Declined { code, message } if code == "API.710.000.002" && message.contains("configuration"))
    );
    assert!(matches!(
        classify(StatusCode::TOO_MANY_REQUESTS, "", None, "/p"),
        PspOutcome::Retryable { .. }
    ));
    assert!(matches!(
        classify(StatusCode::INTERNAL_SERVER_ERROR, err200, None, "/p"),
        PspOutcome::Unknown { .. }
    ));
    assert!(matches!(
        classify(StatusCode::OK, "<html>", None, "/p"),
        PspOutcome::Unknown { .. }
    ));
    let pending = r#"{"id":"s-chg-3","isSuccess":false,"isPending":true,"amount":"10.0000","currency":"EUR"}"#;
    assert_eq!(
        classify(StatusCode::OK, pending, Some(eur(1000)), "/p"),
        PspOutcome::Pending {
            tx_id: "s-chg-3".into()
        }
    );
    let bare = r#"{"id":"s-chg-4","amount":"10.0000","currency":"EUR"}"#;
    assert_eq!(
        classify(StatusCode::OK, bare, Some(eur(1000)), "/p"),
        PspOutcome::Pending {
            tx_id: "s-chg-4".into()
        }
    );
}

fn view(txs: &[(&str, &str, &str, &str)]) -> PaymentView {
    let base = "https://sbx-api.unzer.com/v1/payments/s-pay-1";
    let wire: WirePayment = serde_json::from_value(serde_json::json!({
        "id": "s-pay-1",
        "state": {"id": 1},
        "currency": "EUR",
        "resources": {"typeId": "s-crd-abc"},
        "transactions": txs.iter().map(|(kind, status, path, amount)| serde_json::json!({
            "type": kind, "status": status, "url": format!("{base}/{path}"), "amount": amount,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    PaymentView::try_from(wire).unwrap()
}

fn part(id: &str, charge: &str, minor: i64, status: TxStatus) -> RefundPart {
    RefundPart {
        id: id.into(),
        charge: Some(charge.into()),
        amount: eur(minor),
        status,
    }
}

#[test]
fn refund_plan_spreads_in_charge_order_and_sends_only_the_remainder() {
    let v = view(&[
        ("authorize", "success", "authorize/s-aut-1", "100.0000"),
        ("charge", "success", "charges/s-chg-1", "60.0000"),
        ("charge", "error", "charges/s-chg-2", "5.0000"),
        ("charge", "success", "charges/s-chg-3", "40.0000"),
    ]);
    assert_eq!(
        plan_refund(&v, eur(7000), &[]),
        Ok(RefundPlan::Send(vec![
            ("s-chg-1".into(), eur(6000)),
            ("s-chg-3".into(), eur(1000))
        ]))
    );
    // after the first part: only the rest, on the next charge with money left
    let v = view(&[
        ("authorize", "success", "authorize/s-aut-1", "100.0000"),
        ("charge", "success", "charges/s-chg-1", "60.0000"),
        ("charge", "success", "charges/s-chg-3", "40.0000"),
        (
            "cancel-charge",
            "success",
            "charges/s-chg-1/cancels/s-cnl-1",
            "60.0000",
        ),
    ]);
    let first = part("s-cnl-1", "s-chg-1", 6000, TxStatus::Success);
    assert_eq!(
        plan_refund(&v, eur(7000), std::slice::from_ref(&first)),
        Ok(RefundPlan::Send(vec![("s-chg-3".into(), eur(1000))]))
    );
    assert_eq!(
        plan_refund(&v, eur(6000), std::slice::from_ref(&first)),
        Ok(RefundPlan::Complete {
            tx_id: "s-cnl-1".into()
        })
    );
    let pending = part("s-cnl-1", "s-chg-1", 6000, TxStatus::Pending);
    assert_eq!(
        plan_refund(&v, eur(7000), &[pending]),
        Ok(RefundPlan::Waiting {
            tx_id: "s-cnl-1".into()
        })
    );
    // a failed part moved nothing and is not counted
    let failed = part("s-cnl-9", "s-chg-3", 1000, TxStatus::Error);
    assert_eq!(
        plan_refund(&v, eur(7000), &[first.clone(), failed]),
        Ok(RefundPlan::Send(vec![("s-chg-3".into(), eur(1000))]))
    );
    assert!(matches!(
        plan_refund(&v, eur(5000), std::slice::from_ref(&first)),
        Err(PspOutcome::Declined { code, .. }) if code == "PAYBRIDGE.REFUND_REFERENCE"
    ));
    // 40.00 left in total; 30.01 more than the 60.00 already refunded is too much
    assert!(matches!(
        plan_refund(&v, eur(10001), &[first]),
        Err(PspOutcome::Declined { code, message })
            if code == "PAYBRIDGE.REFUND_EXCEEDS" && message.contains("s-cnl-1 60.00 EUR on s-chg-1")
    ));
}

#[test]
fn refund_plan_counts_payment_level_cancels_against_the_total() {
    let v = view(&[
        ("charge", "success", "charges/s-chg-1", "60.0000"),
        ("charge", "success", "charges/s-chg-2", "40.0000"),
        (
            "cancel-charge",
            "success",
            "charges/cancels/s-cnl-1",
            "50.0000",
        ),
    ]);
    assert!(matches!(
        plan_refund(&v, eur(5001), &[]),
        Err(PspOutcome::Declined { code, message })
            if code == "PAYBRIDGE.REFUND_EXCEEDS" && message.contains("less 50.00 EUR refunded at payment level")
    ));
    assert_eq!(
        plan_refund(&v, eur(5000), &[]),
        Ok(RefundPlan::Send(vec![("s-chg-1".into(), eur(5000))]))
    );
}

#[test]
fn debug_never_shows_private_keys() {
    let psp = UnzerPsp::new(
        HashMap::from([("s-pub-1".to_string(), Secret::new("s-priv-secret"))]),
        UnzerTimeouts::default(),
    )
    .unwrap();
    let d = format!("{psp:?}");
    assert!(d.contains("s-pub-1") && !d.contains("s-priv-secret"), "{d}");
}
