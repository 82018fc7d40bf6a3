//! Unit tests of the Unzer wire types and their conversions.

use super::*;

#[test]
fn amounts_trim_unzer_zeros_but_reject_extra_precision() {
    let a = WireAmount::Text("100.0000".into());
    assert_eq!(
        a.money(Currency::EUR).unwrap(),
        Money::from_minor(10000, Currency::EUR)
    );
    assert_eq!(
        WireAmount::Text("500.0000".into())
            .money(Currency::JPY)
            .unwrap(),
        Money::from_minor(500, Currency::JPY)
    );
    assert!(
        WireAmount::Text("12.3450".into())
            .money(Currency::EUR)
            .is_err()
    );
    assert!(
        WireAmount::Text("0.5000".into())
            .money(Currency::JPY)
            .is_err()
    );
    assert_eq!(
        WireAmount::Text("1.2340".into())
            .money(Currency::KWD)
            .unwrap(),
        Money::from_minor(1234, Currency::KWD)
    );
    let n: WireAmount = serde_json::from_str("12.99").unwrap();
    assert_eq!(
        n.money(Currency::EUR).unwrap(),
        Money::from_minor(1299, Currency::EUR)
    );
    assert!(WireAmount::Text("twelve".into()).decimal().is_err());
}

#[test]
fn amounts_are_read_from_their_exact_text() {
    let n: WireAmount = serde_json::from_str("99.99999999999999999").unwrap();
    assert_eq!(n, WireAmount::Number("99.99999999999999999".into()));
    assert!(n.decimal().is_err(), "more than 4 decimals as a number");
    let n: WireAmount = serde_json::from_str("100").unwrap();
    assert_eq!(n.decimal().unwrap(), Decimal::from(100));
    for bad in [
        "1e2", "1E-2", "-", ".", "1_000", "1.2.3", "+1", " 1 2", "NaN",
    ] {
        assert!(
            WireAmount::Text(bad.into()).decimal().is_err(),
            "{bad:?} accepted"
        );
    }
    for bad in ["1e2", "true", "null", "[]", "{}"] {
        let r: Result<WireAmount, _> = serde_json::from_str(bad);
        assert!(r.is_err() || r.unwrap().decimal().is_err(), "{bad:?}");
    }
    assert!(
        WireAmount::Text("1.000000000000000000000000000001".into())
            .decimal()
            .is_err()
    );
    assert_eq!(
        WireAmount::Text("-0.5000".into()).decimal().unwrap(),
        Decimal::new(-5000, 4)
    );
    let v: WireAmount = serde_json::from_value(serde_json::json!("1.5000")).unwrap();
    assert_eq!(v, WireAmount::Text("1.5000".into()));
}

#[test]
fn unknown_values_are_pending_never_success() {
    assert_eq!(payment_state(42), PaymentState::Pending);
    assert_eq!(tx_status(Some("resumed")), TxStatus::Pending);
    assert_eq!(tx_status(Some("weird")), TxStatus::Pending);
    assert_eq!(tx_status(None), TxStatus::Pending);
    let r: WireReply = serde_json::from_str(r#"{"id":"s-chg-1"}"#).unwrap();
    assert_eq!(
        r.kind(),
        ReplyKind::Unclear {
            tx_id: Some("s-chg-1".into())
        }
    );
    assert_eq!(r.status(), TxStatus::Pending);
}

#[test]
fn errors_win_over_flags_even_with_2xx() {
    let r: WireReply = serde_json::from_str(
        r#"{"id":"s-err-1","isSuccess":false,"isPending":false,"isError":true,
            "errors":[{"code":"API.330.100.007","merchantMessage":"too much","customerMessage":"sorry"}]}"#,
    )
    .unwrap();
    assert_eq!(
        r.kind(),
        ReplyKind::Error {
            code: "API.330.100.007".into(),
            message: "too much".into()
        }
    );
    let s: WireReply =
        serde_json::from_str(r#"{"id":"s-shp-1","isSuccess":"true","isPending":"false"}"#).unwrap();
    assert_eq!(
        s.kind(),
        ReplyKind::Success {
            tx_id: "s-shp-1".into()
        }
    );
}

#[test]
fn all_seventeen_methods_but_the_piv_alias_come_from_type_ids() {
    use PaymentMethod::*;
    let pairs = [
        ("s-dds-x", SepaDirectDebitSecured),
        ("s-pdd-x", PaylaterDirectDebit),
        ("s-ivc-x", Invoice),
        ("s-ivs-x", InvoiceSecured),
        ("s-piv-x", PaylaterInvoice),
        ("s-pit-x", PaylaterInstallment),
        ("s-ppy-x", Prepayment),
        ("s-ppl-x", Paypal),
        ("s-crd-x", Card),
        ("s-sft-x", Sofort),
        ("s-eps-x", Eps),
        ("s-idl-x", Ideal),
        ("s-gro-x", Giropay),
        ("s-ali-x", Alipay),
        ("s-p24-x", Przelewy24),
        ("p-apl-x", ApplePay),
    ];
    for (id, m) in pairs {
        assert_eq!(method_from_type_id(id), Some(m), "{id}");
    }
    assert_eq!(method_from_type_id("s-kla-x"), None);
    assert!(is_paylater(InvoicePaylater));
}

#[test]
fn transaction_dates_are_read_as_german_local_time() {
    let utc = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    // Winter (UTC+1), summer (UTC+2), the autumn hour that exists twice (the earlier one),
    // the spring hour that does not exist (read an hour earlier).
    assert_eq!(
        tx_date("2026-01-15 10:00:00"),
        Some(utc("2026-01-15T09:00:00Z"))
    );
    assert_eq!(
        tx_date("2026-07-15 10:00:00"),
        Some(utc("2026-07-15T08:00:00Z"))
    );
    assert_eq!(
        tx_date("2026-10-25 02:30:00"),
        Some(utc("2026-10-25T00:30:00Z"))
    );
    assert_eq!(
        tx_date("2026-03-29 02:30:00"),
        Some(utc("2026-03-29T00:30:00Z"))
    );
    assert_eq!(tx_date("15.01.2026 10:00"), None);
    assert_eq!(tx_date(""), None);
}
