//! Unit tests of the pixi row mapping.

use super::read::*;
use super::writes::*;
use super::*;

fn row(cols: &[(&str, &str)]) -> Row {
    Row(cols
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[test]
fn maps_statuses_money_and_credit_notes() {
    let h = Header::from_row(&row(&[
        ("OrderNr", "7"),
        ("OrderNrExternal", "S-7"),
        ("ShopID", "ABC"),
        ("PaymentType", "U"),
        ("ccpPayID", "s-pay-1 "),
        ("OrderStatus", "OPEN"),
        ("OrderCurrency", "EUR"),
        ("OrderLocked", "N"),
    ]))
    .unwrap();
    let lines = [
        row(&[
            ("OrderlineKey", "1"),
            ("Status", "HAL"),
            ("Qty", "3"),
            ("Price_OrderCurr", "0.3333"),
        ]),
        row(&[
            ("OrderlineKey", "2"),
            ("Status", "STO"),
            ("Qty", "1"),
            ("Price", "5.0000"),
        ]),
    ];
    let totals = [row(&[("Total", "6.0000")])];
    let invoices = [
        row(&[
            ("InvoiceNr", "R1"),
            ("Total_OrderCurr", "6.0000"),
            ("PaidAmount", "6.0000"),
        ]),
        row(&[
            ("InvoiceNr", "G1"),
            ("Total_OrderCurr", "-1.0000"),
            ("PaidAmount", "0.0000"),
        ]),
    ];
    let o = map_order(&h, &lines, &totals, &invoices).unwrap();
    assert_eq!(o.status, OrderStatus::Hold);
    assert_eq!(o.psp_payment_id.as_deref(), Some("s-pay-1"));
    assert_eq!(o.lines[0].amount.to_minor().unwrap(), 100);
    assert_eq!(o.lines[1].status, LineStatus::Cancelled);
    assert_eq!(o.total.to_minor().unwrap(), 600);
    assert!(o.invoices[0].captured);
    assert_eq!(o.credit_notes[0].amount.to_minor().unwrap(), 100);
    assert!(!o.credit_notes[0].settled);
}

#[test]
fn decimals_are_exact_and_rows_of_other_orders_refused() {
    assert_eq!(decimal(" 46.1800 ", "x").unwrap(), Decimal::new(461800, 4));
    for v in [
        "1e3",
        "1_000",
        "1.000000000000000000000000000001",
        "1.2.3",
        "",
        "-",
    ] {
        assert!(decimal(v, "x").is_err(), "{v:?}");
    }
    assert!(same_order(&row(&[("OrderNr", "7")]), 7, "x").is_ok());
    assert!(same_order(&row(&[("Total", "1")]), 7, "x").is_ok());
    assert!(same_order(&row(&[("OrderNR", "8")]), 7, "x").is_err());
    assert!(same_order(&row(&[("OrderNr", "7x")]), 7, "x").is_err());
}

#[test]
fn tag_fits_pixi_columns() {
    let t = tag("acme/main/1/invoice:R1/capture_invoice");
    assert_eq!(t.len(), 28);
    assert!(psp_reference("x").len() <= 50);
    assert!(check_event("ZE").is_ok() && check_event("TOOLONG").is_err());
}

#[test]
fn xml_columns_are_read_as_rows_and_garbage_refused() {
    let rows = soap::parse_rows(
        r#" <row AddrKey="1109" AddrType="B"><ShopID>LEO</ShopID><PaymentCode /></row>
            <row><OrderlineKey>5</OrderlineKey></row> "#,
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get("AddrKey"), Some("1109"));
    assert_eq!(rows[0].get("ShopID"), Some("LEO"));
    assert_eq!(rows[0].get("PaymentCode"), None);
    assert_eq!(rows[1].get("OrderlineKey"), Some("5"));
    for bad in [
        "<row>",
        "<line/>",
        "text<row/>",
        "<!DOCTYPE x><row/>",
        "<a:row/>",
    ] {
        assert!(soap::parse_rows(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_get_order_reply_gives_lines_and_total_per_order() {
    let xml = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:R xmlns:m="urn:m"><m:Result><SqlRowSet><diffgram><SqlRowSet1 xmlns="urn:s1"><row><OrderNr>7</OrderNr><OrderTotal>12.5000</OrderTotal><Orderlines><row><OrderlineKey>1</OrderlineKey><Qty>1</Qty></row><row><OrderlineKey>2</OrderlineKey></row></Orderlines></row></SqlRowSet1></diffgram></SqlRowSet><SqlResultCode>0</SqlResultCode></m:Result></m:R></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
    let reply = soap::parse_reply(xml).unwrap();
    let parts = batch_parts(&reply, &[7, 8]).unwrap();
    assert_eq!(parts.len(), 1, "order 8 is not in the reply");
    let p = &parts[&7];
    assert_eq!(p.lines.len(), 2);
    assert_eq!(p.lines[1].get("OrderlineKey"), Some("2"));
    assert_eq!(p.totals[0].get("Total"), Some("12.5000"));
    assert!(matches!(
        batch_parts(&reply, &[8]),
        Err(ErpError::BadReply(_))
    ));
    assert!(matches!(
        batch_parts(&Reply::default(), &[7]),
        Err(ErpError::BadReply(_))
    ));
}

#[test]
fn release_facts_need_shop_order_number_and_payment_id() {
    let mut o = ErpOrder::known_by_id("7", Currency::EUR);
    assert!(release_facts(&o).is_none());
    o.mandant = "ABC".into();
    o.shop_order_no = "S-7".into();
    assert!(
        release_facts(&o).is_none(),
        "no ccpPayID: the header is read"
    );
    o.psp_payment_id = Some("s-pay-7".into());
    let f = release_facts(&o).unwrap();
    assert_eq!(
        (
            f.shop_id.as_str(),
            f.shop_order_no.as_str(),
            f.psp_payment_id.as_deref()
        ),
        ("ABC", "S-7", Some("s-pay-7"))
    );
}
