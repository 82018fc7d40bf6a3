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
    // pixiGetOrderTotals rows have no row for the cancelled line (see read::order_total).
    let totals = [row(&[
        ("OrderNr", "7"),
        ("Qty", "3"),
        ("Subtotal", "1.0000"),
        ("ShipCost", "5.0000"),
        ("Discount", "0.0000"),
    ])];
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

/// Rows shaped like the result set of https://pixi-api-docs.de/api/pixiGetOrderTotals: one per
/// item, the order-level columns (ShipCost, Discount, VAT) repeated on each, no `Total`.
fn page_rows(discount: &str) -> Vec<Row> {
    let item = |qty: &str, price: &str, sub: &str, name: &str| {
        row(&[
            ("Qty", qty),
            ("Price", price),
            ("EanUpc", "4012345678901"),
            ("VATLow", "0.0000"),
            ("ArtName", name),
            ("OrderNr", "7"),
            ("VATHigh", "13.8500"),
            ("Discount", discount),
            ("ItemNote", ""),
            ("ShipCost", "4.9500"),
            ("Subtotal", sub),
            ("VATTotal", "13.8500"),
        ])
    };
    vec![
        item("2", "19.9900", "39.9800", "Shirt"),
        item("1", "49.9000", "49.9000", "Shoes"),
        item("3", "0.3333", "1.0000", "Socks"),
    ]
}

#[test]
fn a_page_shaped_totals_reply_without_total_reconciles_to_the_cent() {
    // 39.98 + 49.90 + 1.00 + 4.95 shipping (once) − 10.00 discount (once) = 85.83
    let t = order_total(7, &page_rows("10.0000"), Currency::EUR).unwrap();
    assert_eq!(t.to_minor().unwrap(), 8583);
    // The page does not show the sign of Discount: a negative one reduces the total as well.
    let t = order_total(7, &page_rows("-10.0000"), Currency::EUR).unwrap();
    assert_eq!(t.to_minor().unwrap(), 8583);
    // Without a discount: items plus shipping.
    let t = order_total(7, &page_rows("0.0000"), Currency::EUR).unwrap();
    assert_eq!(t.to_minor().unwrap(), 9583);
    // An undocumented `Total` column is not read: the documented columns decide.
    let mut rows = page_rows("10.0000");
    rows[0].0.push(("Total".into(), "1.0000".into()));
    assert_eq!(
        order_total(7, &rows, Currency::EUR)
            .unwrap()
            .to_minor()
            .unwrap(),
        8583
    );
    // No item rows (every line cancelled): nothing left to invoice.
    assert!(order_total(7, &[], Currency::EUR).unwrap().is_zero());
}

#[test]
fn totals_rows_that_disagree_or_lack_subtotal_are_refused() {
    let mut rows = page_rows("10.0000");
    rows[1].0.retain(|(k, _)| k != "ShipCost");
    rows[1].0.push(("ShipCost".into(), "5.9500".into()));
    assert!(matches!(
        order_total(7, &rows, Currency::EUR),
        Err(ErpError::BadReply(m)) if m.contains("ShipCost")
    ));
    let mut rows = page_rows("0.0000");
    rows[2].0.retain(|(k, _)| k != "Subtotal");
    assert!(matches!(
        order_total(7, &rows, Currency::EUR),
        Err(ErpError::BadReply(_))
    ));
    // A discount larger than the order is not a negative total.
    assert!(order_total(7, &page_rows("500.0000"), Currency::EUR).is_err());
    // A column missing on some rows counts from the rows that have it.
    let mut rows = page_rows("10.0000");
    rows[0].0.retain(|(k, _)| k != "Discount");
    assert_eq!(
        order_level(7, &rows, "Discount").unwrap(),
        Decimal::new(100000, 4)
    );
    assert_eq!(
        order_level(7, &rows, "NoSuchColumn").unwrap(),
        Decimal::ZERO
    );
}

#[test]
fn map_order_takes_the_total_from_the_item_rows() {
    let h = Header::from_row(&row(&[
        ("OrderNr", "7"),
        ("PaymentType", "K"),
        ("OrderCurrency", "EUR"),
    ]))
    .unwrap();
    let lines = [row(&[
        ("OrderlineKey", "1"),
        ("Qty", "2"),
        ("Price", "19.9900"),
    ])];
    let o = map_order(&h, &lines, &page_rows("10.0000"), &[]).unwrap();
    assert_eq!(o.total.to_minor().unwrap(), 8583);
    assert_eq!(o.payment_method, "K");
    // A totals row of another order is refused.
    let mut other = page_rows("10.0000");
    other[1].0.retain(|(k, _)| k != "OrderNr");
    other[1].0.push(("OrderNr".into(), "8".into()));
    assert!(map_order(&h, &lines, &other, &[]).is_err());
    // No item rows: refused while a line is still to invoice, 0 once every line is cancelled.
    assert!(matches!(
        map_order(&h, &lines, &[], &[]),
        Err(ErpError::BadReply(_))
    ));
    let cancelled = [row(&[
        ("OrderlineKey", "1"),
        ("Status", "STO"),
        ("Price", "1.00"),
    ])];
    let o = map_order(&h, &cancelled, &[], &[]).unwrap();
    assert!(o.total.is_zero());
}

#[test]
fn can_change_address_reads_the_documented_return() {
    let scalar = |v: &str| Reply {
        scalars: vec![("return".into(), v.into())],
        ..Reply::default()
    };
    assert_eq!(can_change(&scalar("1")), Some(true));
    assert_eq!(can_change(&scalar(" 0 ")), Some(false));
    assert_eq!(can_change(&scalar("yes")), None);
    assert_eq!(can_change(&Reply::default()), None);
    let as_row = Reply {
        result_sets: vec![vec![row(&[("return", "1")])]],
        ..Reply::default()
    };
    assert_eq!(can_change(&as_row), Some(true));
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
