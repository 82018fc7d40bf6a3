//! The pixi connector against the pixi SOAP simulator, whose replies are built from the public
//! call pages (https://pixi-api-docs.de/api/<CallName>, named beside each test): work lists and
//! cursor, orders mapped to the cent from the per-item pixiGetOrderTotals rows (discount and
//! freight), every write as it lands in pixi's state, error mapping (SOAP fault, ERROR return
//! codes, 503, refused connections, bad credentials), unknown outcomes resolved by read-back
//! without double booking, call counts of reads, and XML escaping of hostile text.

use paybridge_core::config::{Config, Secret};
use paybridge_core::erp::pixi::{PixiErp, PixiTimeouts, soap};
use paybridge_core::erp::{Erp, ErpError};
use paybridge_core::ledger::{ErpWrite, psp_reference};
use paybridge_core::model::{
    BankDetails, CreditNote, ErpOrder, Invoice, LineStatus, OrderLine, OrderStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_testkit::pixi_sim::{BookingSource, NewOrder, PixiSim, SimFault};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::time::Duration;

fn erp(sim: &PixiSim, codes: &[&str]) -> PixiErp {
    PixiErp::new(
        &sim.url(),
        &sim.user(),
        Secret::new(sim.password()),
        codes.iter().map(|c| c.to_string()).collect(),
        PixiTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(800),
        },
    )
    .expect("connector")
}

fn eur(s: &str) -> Money {
    Money::parse(s, Currency::EUR).expect("amount")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn line_keys(sim: &PixiSim, nr: i64) -> Vec<i64> {
    sim.order(nr)
        .expect("order")
        .lines
        .iter()
        .map(|l| l.key)
        .collect()
}

fn tag(op: &str) -> String {
    format!("[{}]", psp_reference(op))
}

/// Facts of an order known only by its number: the connector reads what a write needs.
fn bare(id: &str) -> ErpOrder {
    ErpOrder::known_by_id(id, Currency::EUR)
}

/// The SOAP call names of the simulator's request log, in order.
fn call_names(sim: &PixiSim) -> Vec<String> {
    sim.requests().into_iter().map(|r| r.call).collect()
}

/// https://pixi-api-docs.de/api/pixiGetOrderTotals: a multi-line order with a discount and
/// freight, read from the page's per-item rows (no `Total` column), reconciles to the cent: the
/// release compares the right amount, so no shipping lock, no mismatch.
#[tokio::test]
async fn a_multi_line_order_with_discount_and_freight_reconciles_to_the_cent() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(330, "K")
            .pay_id("s-pay-330")
            .line(2, "19.99")
            .line(1, "49.90")
            .line(3, "0.3333")
            .ship_cost("4.95")
            .discount("10.00"),
    );
    let pixi = erp(&sim, &["K"]);
    sim.clear_log();
    let o = pixi
        .orders(&[nr.to_string()])
        .await
        .expect("orders")
        .remove(0);
    // 39.98 + 49.90 + 1.00 + 4.95 − 10.00
    assert_eq!(o.total, eur("85.83"));
    assert_eq!(o.total.amount(), sim.order(nr).expect("order").total());
    assert_eq!(o.status, OrderStatus::Hold);
    assert!(!o.shipping_lock);
    assert_eq!(o.payment_method, "K");
    // The simulator answered with the page's shape: a row per item, order-level columns on each.
    let raw = sim
        .requests()
        .into_iter()
        .find(|r| r.call == "pixiGetOrderTotals")
        .expect("asked");
    assert_eq!(raw.params, [("OrderNr".to_string(), nr.to_string())]);
    let reply = totals_reply(&sim, nr).await;
    assert_eq!(reply.rows().len(), 3, "one row per item");
    assert!(reply.rows().iter().all(|r| r.get("Total").is_none()
        && r.get("Discount") == Some("10.0000")
        && r.get("ShipCost") == Some("4.9500")));

    // Released at the reconciled amount: no lock is set, no comment is needed.
    pixi.apply(&o, &ErpWrite::Release, "op-330")
        .await
        .expect("release");
    let after = sim.order(nr).expect("order");
    assert!(!after.shipping_lock && after.lock_reasons.is_empty());
    assert!(sim.comments(nr).is_empty());
    // The invoice of the whole order equals the order total (the first invoice carries freight
    // and discount), and the capture books that amount.
    let inv = sim.ship_lines(nr, &[]);
    let read = pixi
        .orders(&[nr.to_string()])
        .await
        .expect("orders")
        .remove(0);
    assert_eq!(read.invoices[0].amount, o.total);
    assert_eq!(read.total, o.total, "shipped lines still count");
    let w = ErpWrite::MarkInvoiceCaptured {
        invoice_id: inv.clone(),
        event_code: "ZE".into(),
        amount: o.total,
    };
    pixi.apply(&read, &w, "op-330c").await.expect("capture");
    assert_eq!(
        sim.invoice(&inv).expect("invoice").paid_amount,
        dec("85.83")
    );
}

/// The raw pixiGetOrderTotals reply for `nr`, as the simulator sends it.
async fn totals_reply(sim: &PixiSim, nr: i64) -> soap::Reply {
    let body = soap::envelope(
        &sim.url(),
        "pixiGetOrderTotals",
        &[soap::Param::int("OrderNr", nr)],
    );
    let text = reqwest::Client::new()
        .post(sim.url())
        .basic_auth(sim.user(), Some(sim.password()))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{}pixiGetOrderTotals\"", sim.url()))
        .body(body)
        .send()
        .await
        .expect("http")
        .text()
        .await
        .expect("body");
    soap::parse_reply(&text).expect("reply")
}

/// Orders are read with the four listed calls (pixiGetOrderHeader, pixiGetOrderline,
/// pixiGetOrderTotals, pixiGetInvoice); pixiGetOrder, not in seed 000's list and without order
/// lines or a total on its page, is never asked.
#[tokio::test]
async fn orders_are_read_with_the_four_listed_calls() {
    let sim = PixiSim::start().await;
    let a = sim.add_order(NewOrder::new(300, "U").line(2, "10.00").pay_id("s-pay-300"));
    let b = sim.add_order(
        NewOrder::new(301, "U")
            .line(1, "5.00")
            .ship_cost("4.95")
            .open(),
    );
    sim.ship_lines(b, &[]);
    let pixi = erp(&sim, &["U"]);
    sim.clear_log();
    let ids = [a.to_string(), "404".to_string(), b.to_string()];
    let got = pixi.orders(&ids).await.expect("orders");
    assert_eq!(
        got.iter().map(|o| o.order_id.as_str()).collect::<Vec<_>>(),
        [a.to_string(), b.to_string()],
        "unknown ids are left out, the order of the ids is kept"
    );
    let calls = call_names(&sim);
    assert!(!calls.iter().any(|c| c == "pixiGetOrder"), "{calls:?}");
    assert_eq!(sim.calls("pixiGetOrderHeader"), 3);
    for call in ["pixiGetOrderline", "pixiGetOrderTotals", "pixiGetInvoice"] {
        assert_eq!(sim.calls(call), 2, "{call}");
    }
    assert_eq!(got[0].total, eur("20.00"));
    assert_eq!(
        got[0].customer_key,
        sim.order(a).map(|o| o.cust_key.to_string())
    );
    assert_eq!(got[1].total, eur("9.95"));
    assert_eq!(got[1].invoices.len(), 1);
}

#[tokio::test]
async fn release_and_booking_take_the_header_facts_from_the_order_facts() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(310, "U").line(1, "30.00").pay_id("s-pay-310"));
    let id = nr.to_string();
    let pixi = erp(&sim, &["U"]);
    let facts = pixi
        .orders(std::slice::from_ref(&id))
        .await
        .expect("orders")
        .remove(0);
    assert!(facts.customer_key.is_some());
    sim.clear_log();
    pixi.apply(&facts, &ErpWrite::Release, "op-r")
        .await
        .expect("release");
    assert_eq!(
        call_names(&sim),
        ["pixiPaySetAuthorizationStatus", "pixiReleaseOrder"],
        "no header read"
    );
    let rel = &sim.requests()[1];
    assert_eq!(
        (rel.param("ShopId"), rel.param("OrderNrExternal")),
        (
            Some(facts.mandant.as_str()),
            Some(facts.shop_order_no.as_str())
        )
    );
    assert_eq!(sim.requests()[0].param("AuthID"), Some("s-pay-310"));
    assert_eq!(sim.order(nr).expect("order").status, "OPEN");

    let booking = ErpWrite::ManualBooking {
        amount: eur("-5.00"),
        event_code: "RE".into(),
        document: id.clone(),
    };
    sim.clear_log();
    pixi.apply(&facts, &booking, "op-b").await.expect("booking");
    assert_eq!(call_names(&sim), ["pixiCACreateManualBooking"]);
    let cust = sim.order(nr).expect("order").cust_key;
    assert_eq!(
        sim.requests()[0].param("CustKey"),
        Some(cust.to_string().as_str())
    );

    // A fact missing: the header is read as before.
    let mut partial = facts.clone();
    partial.customer_key = None;
    sim.clear_log();
    pixi.apply(&partial, &booking, "op-b2")
        .await
        .expect("booking");
    assert_eq!(
        call_names(&sim),
        ["pixiGetOrderHeader", "pixiCACreateManualBooking"]
    );
}

/// https://pixi-api-docs.de/api/pixiGetOrderTotals: replies that do not fit the page's rows
/// are refused, never guessed from.
#[tokio::test]
async fn a_bad_totals_reply_is_refused_not_guessed() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(320, "U").line(1, "1.00").line(1, "2.00"));
    let pixi = erp(&sim, &["U"]);
    let body = |rows: &str| {
        format!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:pixiGetOrderTotalsResponse xmlns:m="urn:m"><m:pixiGetOrderTotalsResult><SqlRowSet><diffgram><SqlRowSet1>{rows}</SqlRowSet1></diffgram></SqlRowSet><SqlResultCode>0</SqlResultCode></m:pixiGetOrderTotalsResult></m:pixiGetOrderTotalsResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        )
    };
    let item = |sub: &str, ship: &str| {
        format!(
            "<row><Qty>1</Qty><OrderNr>{nr}</OrderNr><ShipCost>{ship}</ShipCost><Discount>0.0000</Discount><Subtotal>{sub}</Subtotal></row>"
        )
    };
    for (rows, why) in [
        (
            item("1.0000", "1.0000") + &item("2.0000", "2.0000"),
            "ShipCost differs between rows",
        ),
        (item("1e3", "0.0000"), "a Subtotal that is not a decimal"),
        (
            format!("<row><OrderNr>{nr}</OrderNr><Total>3.0000</Total></row>"),
            "only an undocumented Total",
        ),
        (
            item("1.0000", "0.0000").replace(&format!(">{nr}<"), ">999<"),
            "a row of another order",
        ),
    ] {
        sim.respond_raw_once("pixiGetOrderTotals", body(&rows));
        match pixi.orders(&[nr.to_string()]).await {
            Err(ErpError::BadReply(m)) => assert!(!m.is_empty(), "{why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // A reply without any row set says nothing about the order.
    sim.respond_raw_once(
        "pixiGetOrderTotals",
        body("").replace(
            "<SqlRowSet><diffgram><SqlRowSet1></SqlRowSet1></diffgram></SqlRowSet>",
            "",
        ),
    );
    assert!(matches!(
        pixi.orders(&[nr.to_string()]).await,
        Err(ErpError::BadReply(_))
    ));
    // The page's rows: shipping counted once.
    sim.respond_raw_once(
        "pixiGetOrderTotals",
        body(&(item("1.0000", "4.9500") + &item("2.0000", "4.9500"))),
    );
    let got = pixi.orders(&[nr.to_string()]).await.expect("page rows");
    assert_eq!(got[0].total, eur("7.95"));
}

/// Pages: pixiPayGetOrdersToAuthorize, pixiPayGetInvoicesToCapture (`PaymentCode` char,
/// `RowCount`, `FromInvoiceId`), pixiGetChangedOrders (`DateTimeFrom`, `DateTimeTo` cursor,
/// `PaymentType`).
#[tokio::test]
async fn changes_finds_work_lists_and_changed_orders_and_advances_the_cursor() {
    let sim = PixiSim::start().await;
    let to_authorize = sim.add_order(NewOrder::new(1, "U").line(1, "10.00").pay_id("s-pay-1"));
    let to_capture = sim.add_order(NewOrder::new(2, "U").line(1, "20.00").open());
    sim.ship_lines(to_capture, &[]);
    let other_code = sim.add_order(NewOrder::new(3, "X").line(1, "30.00").open());
    let changed = sim.add_order(NewOrder::new(4, "u").line(1, "40.00").open());
    let pixi = erp(&sim, &["U"]);

    let first = pixi.changes(None).await.expect("changes");
    assert!(
        first.order_ids.contains(&to_authorize.to_string()),
        "{first:?}"
    );
    assert!(
        first.order_ids.contains(&to_capture.to_string()),
        "{first:?}"
    );
    assert!(
        first.order_ids.contains(&changed.to_string()),
        "payment codes compare like pixi's char columns: {first:?}"
    );
    assert!(
        !first.order_ids.contains(&other_code.to_string()),
        "orders of other payment codes stay out: {first:?}"
    );
    assert_eq!(
        first.order_ids.iter().filter(|i| *i == "1").count(),
        1,
        "no duplicates"
    );
    assert!(!first.watermark.is_empty());
    for call in [
        "pixiPayGetOrdersToAuthorize",
        "pixiPayGetInvoicesToCapture",
        "pixiGetChangedOrders",
    ] {
        assert_eq!(sim.calls(call), 1, "{call}");
    }
    let req = sim
        .requests()
        .into_iter()
        .find(|r| r.call == "pixiPayGetInvoicesToCapture")
        .expect("logged");
    assert_eq!(req.param("PaymentCode"), Some("U"));
    assert_eq!(req.param("FromInvoiceId"), Some("0"));
    assert!(
        req.soap_action
            .as_deref()
            .is_some_and(|a| a.ends_with("pixiPayGetInvoicesToCapture"))
    );

    // Nothing changed since: only the standing work lists come back.
    let second = pixi.changes(Some(&first.watermark)).await.expect("changes");
    assert_eq!(second.order_ids, vec!["1".to_string(), "2".to_string()]);
    assert!(
        second.watermark >= first.watermark,
        "{} < {}",
        second.watermark,
        first.watermark
    );
    let dt = sim
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.call == "pixiGetChangedOrders")
        .expect("logged");
    assert_eq!(dt.param("DateTimeFrom"), Some(first.watermark.as_str()));

    // A change after the cursor is found once, then the cursor moves past it.
    sim.edit_order(changed, |o| o.ship_cost = dec("1.00"));
    let third = pixi
        .changes(Some(&second.watermark))
        .await
        .expect("changes");
    assert!(third.order_ids.contains(&changed.to_string()), "{third:?}");
    assert!(third.watermark > second.watermark);
    let fourth = pixi.changes(Some(&third.watermark)).await.expect("changes");
    assert!(
        !fourth.order_ids.contains(&changed.to_string()),
        "{fourth:?}"
    );

    // Authorized and captured: the work lists empty out.
    sim.edit_order(to_authorize, |o| o.authorized = true);
    sim.set_invoice_paid("RE000001", true);
    let fifth = pixi
        .changes(Some(&fourth.watermark))
        .await
        .expect("changes");
    let sixth = pixi.changes(Some(&fifth.watermark)).await.expect("changes");
    assert!(sixth.order_ids.is_empty(), "{sixth:?}");
}

#[tokio::test]
async fn capture_list_is_paged_with_from_invoice_id() {
    let sim = PixiSim::start().await;
    for nr in 1..=5 {
        sim.add_order(NewOrder::new(nr, "U").line(1, "1.00").open());
        sim.ship_lines(nr, &[]);
    }
    let pixi = erp(&sim, &["U"]).with_list_rows(2);
    let c = pixi
        .changes(Some("2999-01-01 00:00:00"))
        .await
        .expect("changes");
    assert_eq!(c.order_ids, ["1", "2", "3", "4", "5"]);
    assert_eq!(sim.calls("pixiPayGetInvoicesToCapture"), 3);
}

#[tokio::test]
async fn orders_maps_every_field_to_the_cent() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(100, "U")
            .pay_id("s-pay-100")
            .currency("CHF")
            .external("SHOP-100")
            .shop("ABC")
            .ship_cost("4.95")
            .line(2, "19.99")
            .line(1, "5.00")
            .line(3, "0.10")
            .line(1, "7.50")
            .open(),
    );
    let k = line_keys(&sim, nr);
    let invoice = sim.ship_lines(nr, &[k[0]]);
    sim.cancel_lines(nr, &[k[1]]);
    sim.set_line_status(nr, &[k[2]], "NLB");
    sim.edit_order(nr, |o| o.shipping_lock = true);
    let credit = sim.create_credit_note(nr, "10.00");
    let held = sim.add_order(NewOrder::new(101, "U").line(1, "12.34").pay_id("s-pay-101"));

    let pixi = erp(&sim, &["U"]);
    let got = pixi
        .orders(&["100".into(), "101".into(), "404".into()])
        .await
        .expect("orders");
    let chf = Currency::from_code("CHF").expect("CHF");
    let m = |s: &str| Money::parse(s, chf).expect("amount");
    let expected = ErpOrder {
        order_id: "100".into(),
        mandant: "ABC".into(),
        shop_order_no: "SHOP-100".into(),
        psp_payment_id: Some("s-pay-100".into()),
        payment_method: "U".into(),
        status: OrderStatus::Open,
        // 2 × 19.99 + 7.50 + 4.95 shipping; cancelled and undeliverable lines are not invoiced.
        total: m("52.43"),
        lines: vec![
            OrderLine {
                line_id: k[0].to_string(),
                status: LineStatus::Shipped,
                amount: m("39.98"),
            },
            OrderLine {
                line_id: k[1].to_string(),
                status: LineStatus::Cancelled,
                amount: m("5.00"),
            },
            OrderLine {
                line_id: k[2].to_string(),
                status: LineStatus::NotDeliverable,
                amount: m("0.30"),
            },
            OrderLine {
                line_id: k[3].to_string(),
                status: LineStatus::Open,
                amount: m("7.50"),
            },
        ],
        shipping_lock: true,
        invoices: vec![Invoice {
            invoice_id: invoice,
            amount: m("44.93"),
            captured: false,
        }],
        credit_notes: vec![CreditNote {
            credit_id: credit,
            invoice_id: None,
            amount: m("10.00"),
            settled: false,
        }],
        customer_key: sim.order(100).map(|o| o.cust_key.to_string()),
    };
    assert_eq!(got.len(), 2, "unknown ids are left out");
    assert_eq!(got[0], expected);
    let h = &got[1];
    assert_eq!(h.order_id, held.to_string());
    assert_eq!(h.status, OrderStatus::Hold);
    assert_eq!(h.total, eur("12.34"));
    assert!(h.lines.iter().all(|l| l.status == LineStatus::Open));
    assert!(!h.shipping_lock && h.invoices.is_empty() && h.credit_notes.is_empty());

    // A fully shipped order is CLOSED and a paid invoice is captured.
    let inv = sim.ship_lines(held, &[]);
    sim.set_invoice_paid(&inv, true);
    let closed = pixi.orders(&[held.to_string()]).await.expect("orders");
    assert_eq!(closed[0].status, OrderStatus::Closed);
    assert!(closed[0].invoices[0].captured);
}

#[tokio::test]
async fn reads_cost_a_bounded_number_of_calls_and_skip_unchanged_orders() {
    let sim = PixiSim::start().await;
    for nr in 1..=10 {
        sim.add_order(NewOrder::new(nr, "U").line(1, "9.99").open());
    }
    let pixi = erp(&sim, &["U"]);
    let ids: Vec<String> = (1..=6)
        .map(|n| n.to_string())
        .chain(["999".into(), "not-a-number".into()])
        .collect();
    sim.clear_log();
    let got = pixi.orders(&ids).await.expect("orders");
    assert_eq!(got.len(), 6);
    // Four calls per order found; one header read for an id pixi does not know; none for one
    // that cannot be an order number.
    assert_eq!(
        sim.request_count(),
        4 * 6 + 1,
        "{:?}",
        sim.requests().iter().map(|r| &r.call).collect::<Vec<_>>()
    );
    assert_eq!(sim.calls("pixiGetOrderHeader"), 7);
    for call in ["pixiGetOrderline", "pixiGetOrderTotals", "pixiGetInvoice"] {
        assert_eq!(sim.calls(call), 6, "{call}");
    }

    // A poll after the cursor reads only what changed.
    let wm = pixi.changes(None).await.expect("changes").watermark;
    sim.edit_order(3, |o| o.ship_cost = dec("2.00"));
    sim.edit_order(7, |o| o.ship_cost = dec("2.00"));
    sim.clear_log();
    let c = pixi.changes(Some(&wm)).await.expect("changes");
    assert_eq!(c.order_ids, ["3", "7"]);
    let read = pixi.orders(&c.order_ids).await.expect("orders");
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].total, eur("11.99"));
    assert_eq!(
        sim.request_count(),
        3 + 4 * 2,
        "3 list calls for one payment code + 4 per changed order"
    );
}

/// Pages (https://pixi-api-docs.de/api/<call>): pixiPaySetAuthorizationStatus, pixiReleaseOrder,
/// pixiSetOrderShippingLock, pixiCanChangeAddress, pixiChangeAddress, pixiGetAddress,
/// pixiPaySetInvoiceCapture, pixiGetInvoice (read-back by `OrderNR`), pixiCACreateManualBooking,
/// pixiCAGetInvoiceMatch, pixiGetOrderComments; pixiCreateOrderComment has no page.
#[tokio::test]
async fn every_write_lands_in_pixi_as_expected_and_reads_back() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(200, "U")
            .pay_id("s-pay-200")
            .line(1, "50.00")
            .ship_cost("5.00"),
    );
    let id = nr.to_string();
    let pixi = erp(&sim, &["U"]);

    // Release: authorization status + release of the HAL lines.
    let op = "acme/main/200/order:200/release";
    assert_eq!(
        pixi.was_applied(&id, &ErpWrite::Release, op).await,
        Ok(Some(false))
    );
    pixi.apply(&bare(&id), &ErpWrite::Release, op)
        .await
        .expect("release");
    let o = sim.order(nr).expect("order");
    assert_eq!(o.status, "OPEN");
    assert!(o.lines.iter().all(|l| l.status == "ANG"));
    assert!(o.authorized);
    assert_eq!(o.ccp_pay_id.as_deref(), Some("s-pay-200"));
    assert!(o.ccp_log.iter().any(|m| m.contains(&tag(op))));
    let auth = sim
        .requests()
        .into_iter()
        .find(|r| r.call == "pixiPaySetAuthorizationStatus")
        .expect("logged");
    assert_eq!(
        (auth.param("Success"), auth.param("AuthID")),
        (Some("1"), Some("s-pay-200"))
    );
    assert_eq!(
        pixi.was_applied(&id, &ErpWrite::Release, op).await,
        Ok(Some(true))
    );

    // Shipping lock on the order (never the customer-level lock).
    let op = "acme/main/200/order:200/release_prepayment";
    pixi.apply(&bare(&id), &ErpWrite::SetShippingLock, op)
        .await
        .expect("lock");
    let o = sim.order(nr).expect("order");
    assert!(o.shipping_lock);
    assert!(o.lock_reasons.last().is_some_and(|r| r.contains(&tag(op))));
    assert_eq!(sim.calls("pixiSetShippingLock"), 0);
    assert_eq!(
        pixi.was_applied(&id, &ErpWrite::SetShippingLock, op).await,
        Ok(Some(true))
    );
    assert_eq!(
        pixi.was_applied(&id, &ErpWrite::ClearShippingLock, op)
            .await,
        Ok(Some(false))
    );

    // Prepayment transfer data into the customer-service (billing address bank) fields.
    let details = BankDetails {
        holder: "Unzer E-Com GmbH".into(),
        iban: "DE89370400440532013000".into(),
        bic: "COBADEFFXXX".into(),
        descriptor: "4711.1234.5678".into(),
    };
    let w = ErpWrite::TransferDetails {
        details: details.clone(),
    };
    assert_eq!(pixi.was_applied(&id, &w, op).await, Ok(Some(false)));
    pixi.apply(&bare(&id), &w, op)
        .await
        .expect("transfer details");
    let bank = sim.transfer_fields(nr).expect("address");
    assert_eq!(bank.holder.as_deref(), Some("Unzer E-Com GmbH"));
    assert_eq!(bank.iban.as_deref(), Some("DE89370400440532013000"));
    assert_eq!(bank.bic.as_deref(), Some("COBADEFFXXX"));
    assert_eq!(bank.bank_name.as_deref(), Some("4711.1234.5678"));
    assert_eq!(pixi.was_applied(&id, &w, op).await, Ok(Some(true)));
    // https://pixi-api-docs.de/api/pixiCanChangeAddress was asked first, with one of its two
    // (mutually exclusive) parameters.
    let names = call_names(&sim);
    let can = names.iter().position(|c| c == "pixiCanChangeAddress");
    let change = names.iter().position(|c| c == "pixiChangeAddress");
    assert!(can.is_some() && can < change, "{names:?}");

    let op = "acme/main/200/order:200/clear_lock";
    pixi.apply(&bare(&id), &ErpWrite::ClearShippingLock, op)
        .await
        .expect("unlock");
    assert!(!sim.order(nr).expect("order").shipping_lock);
    assert_eq!(
        pixi.was_applied(&id, &ErpWrite::ClearShippingLock, op)
            .await,
        Ok(Some(true))
    );

    // Capture mark with the invoice booking event: one call that also books.
    let invoice = sim.ship_lines(nr, &[]);
    let op = format!("acme/main/200/invoice:{invoice}/capture_invoice");
    let w = ErpWrite::MarkInvoiceCaptured {
        invoice_id: invoice.clone(),
        event_code: "ZE".into(),
        amount: eur("55.00"),
    };
    assert_eq!(pixi.was_applied(&id, &w, &op).await, Ok(Some(false)));
    pixi.apply(&bare(&id), &w, &op).await.expect("capture mark");
    let inv = sim.invoice(&invoice).expect("invoice");
    assert!(inv.paid);
    assert_eq!(inv.paid_amount, dec("55.00"));
    assert_eq!(inv.pay_id.as_deref(), Some(psp_reference(&op).as_str()));
    // https://pixi-api-docs.de/api/pixiPaySetInvoiceCapture: PayCode is the order's payment
    // code (read from the header: the bare facts do not carry it).
    assert_eq!(inv.pay_code.as_deref(), Some("U"));
    let b = sim.bookings_for_order(nr);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].event_id.as_str(), b[0].amount, b[0].source),
        ("ZE", dec("55.00"), BookingSource::Capture)
    );
    assert_eq!(b[0].invoice_nr.as_deref(), Some(invoice.as_str()));
    assert_eq!(
        sim.calls("pixiCACreateManualBooking"),
        0,
        "the capture call books itself"
    );
    assert_eq!(pixi.was_applied(&id, &w, &op).await, Ok(Some(true)));

    // Refund booking for a credit note: a manual booking with the return event, negative.
    let credit = sim.create_credit_note(nr, "20.00");
    let op = format!("acme/main/200/credit_note:{credit}/refund_credit");
    let w = ErpWrite::ManualBooking {
        amount: eur("-20.00"),
        event_code: "RE".into(),
        document: credit.clone(),
    };
    assert_eq!(pixi.was_applied(&id, &w, &op).await, Ok(Some(false)));
    pixi.apply(&bare(&id), &w, &op).await.expect("booking");
    let b = sim.bookings_for_order(nr);
    assert_eq!(b.len(), 2);
    let refund = &b[1];
    assert_eq!(
        (refund.event_id.as_str(), refund.amount, refund.source),
        ("RE", dec("-20.00"), BookingSource::Manual)
    );
    assert_eq!(refund.invoice_nr.as_deref(), Some(credit.as_str()));
    assert!(refund.reference.contains(&tag(&op)));
    assert_eq!(pixi.was_applied(&id, &w, &op).await, Ok(Some(true)));
    assert_eq!(
        pixi.was_applied(&id, &w, "another operation").await,
        Ok(Some(false))
    );

    // Order comment, tagged for read-back.
    let op = "acme/main/200/order:200/problem";
    let w = ErpWrite::Comment {
        text: "paybridge 2025-01-01 10:00 UTC: released".into(),
    };
    assert_eq!(pixi.was_applied(&id, &w, op).await, Ok(Some(false)));
    pixi.apply(&bare(&id), &w, op).await.expect("comment");
    assert_eq!(
        sim.comments(nr),
        vec![format!(
            "{} paybridge 2025-01-01 10:00 UTC: released",
            tag(op)
        )]
    );
    assert_eq!(pixi.was_applied(&id, &w, op).await, Ok(Some(true)));
}

/// https://pixi-api-docs.de/api/pixiCanChangeAddress answers `return` 0 once the order is past
/// the stage where addresses change: the transfer data are refused, pixiChangeAddress is not
/// called. The capture's PayCode comes from the order facts when they carry the payment code.
#[tokio::test]
async fn transfer_data_are_refused_when_pixi_says_the_address_cannot_change() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(340, "V").line(1, "10.00").open());
    let inv = sim.ship_lines(nr, &[]);
    let pixi = erp(&sim, &["V"]);
    let facts = pixi
        .orders(&[nr.to_string()])
        .await
        .expect("orders")
        .remove(0);
    sim.clear_log();
    let w = ErpWrite::TransferDetails {
        details: BankDetails {
            holder: "Unzer E-Com GmbH".into(),
            iban: "DE89370400440532013000".into(),
            bic: "COBADEFFXXX".into(),
            descriptor: "4711.1234.5678".into(),
        },
    };
    match pixi.apply(&facts, &w, "op-t").await {
        Err(ErpError::Refused(m)) => assert!(m.contains("can no longer be changed"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(call_names(&sim), ["pixiCanChangeAddress"]);
    assert_eq!(sim.transfer_fields(nr), Some(Default::default()));

    sim.clear_log();
    let capture = ErpWrite::MarkInvoiceCaptured {
        invoice_id: inv.clone(),
        event_code: "VK".into(),
        amount: eur("10.00"),
    };
    pixi.apply(&facts, &capture, "op-c").await.expect("capture");
    assert_eq!(
        call_names(&sim),
        ["pixiPaySetInvoiceCapture"],
        "no header read"
    );
    assert_eq!(sim.requests()[0].param("PayCode"), Some("V"));
    assert_eq!(
        sim.invoice(&inv).and_then(|i| i.pay_code).as_deref(),
        Some("V")
    );
}

#[tokio::test]
async fn refusals_are_refused_with_pixis_message() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(300, "U").line(1, "10.00"));
    let id = nr.to_string();
    let pixi = erp(&sim, &["U"]);

    sim.fail_next(SimFault::SoapFault("boom: deadlock victim".into()), 1);
    match pixi
        .apply(&bare(&id), &ErpWrite::SetShippingLock, "op")
        .await
    {
        Err(ErpError::Refused(m)) => assert!(m.contains("boom: deadlock victim"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(
        !sim.order(nr).expect("order").shipping_lock,
        "a fault applies nothing"
    );

    // ReturnCode ERROR + ErrorMessage.
    match pixi
        .apply(&bare("999"), &ErpWrite::SetShippingLock, "op")
        .await
    {
        Err(ErpError::Refused(m)) => assert!(m.contains("Order 999 does not exist"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    // SqlMessage + SqlResultCode ≠ 0.
    let w = ErpWrite::MarkInvoiceCaptured {
        invoice_id: "RE999999".into(),
        event_code: "ZE".into(),
        amount: eur("1.00"),
    };
    match pixi.apply(&bare(&id), &w, "op").await {
        Err(ErpError::Refused(m)) => assert!(
            m.contains("SqlResultCode 1") && m.contains("RE999999"),
            "{m}"
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
    // Event codes longer than pixi's varchar(3) never leave paybridge.
    sim.clear_log();
    let w = ErpWrite::MarkInvoiceCaptured {
        invoice_id: "RE1".into(),
        event_code: "TOOLONG".into(),
        amount: eur("1.00"),
    };
    assert!(matches!(
        pixi.apply(&bare(&id), &w, "op").await,
        Err(ErpError::Refused(_))
    ));
    assert_eq!(sim.request_count(), 0);

    // Wrong credentials: HTTP 401 → Refused, and the error does not carry the password.
    let wrong = PixiErp::new(
        &sim.url(),
        &sim.user(),
        Secret::new("hunter2"),
        vec!["U".into()],
        PixiTimeouts::default(),
    )
    .expect("connector");
    match wrong.changes(None).await {
        Err(ErpError::Refused(m)) => {
            assert!(m.contains("401"), "{m}");
            assert!(!m.contains("hunter2"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(sim.auth_failures(), 1);
    assert!(!format!("{wrong:?}").contains("hunter2"));
}

#[tokio::test]
async fn unavailable_means_not_applied_and_garbage_is_a_bad_reply() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(400, "U").line(1, "10.00"));
    let pixi = erp(&sim, &["U"]);
    sim.fail_next(SimFault::Unavailable, 1);
    assert!(matches!(
        pixi.apply(&bare(&nr.to_string()), &ErpWrite::SetShippingLock, "op")
            .await,
        Err(ErpError::Unavailable(_))
    ));
    assert!(!sim.order(nr).expect("order").shipping_lock);
    sim.fail_next(SimFault::Unavailable, 1);
    assert!(matches!(
        pixi.orders(&[nr.to_string()]).await,
        Err(ErpError::Unavailable(_))
    ));

    // A 200 that is not a SOAP reply.
    sim.fail_next(SimFault::BrokenReply, 1);
    assert!(matches!(
        pixi.orders(&[nr.to_string()]).await,
        Err(ErpError::BadReply(_))
    ));

    // Nothing listening: connection refused.
    let addr = sim.addr();
    drop(sim);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let gone = PixiErp::new(
        &format!("http://{addr}/soap/"),
        "u",
        Secret::new("p"),
        vec!["U".into()],
        PixiTimeouts::default(),
    )
    .expect("connector");
    assert!(matches!(
        gone.changes(None).await,
        Err(ErpError::Unavailable(_))
    ));
}

#[tokio::test]
async fn timeout_after_applying_is_unknown_and_read_back_prevents_a_double_booking() {
    let sim = PixiSim::start().await;
    sim.set_hang(Duration::from_secs(5));
    let nr = sim.add_order(
        NewOrder::new(500, "U")
            .pay_id("s-pay-500")
            .line(2, "15.00")
            .open(),
    );
    let id = nr.to_string();
    let invoice = sim.ship_lines(nr, &[]);
    let pixi = erp(&sim, &["U"]);

    let op = format!("acme/main/500/invoice:{invoice}/capture_invoice");
    let capture = ErpWrite::MarkInvoiceCaptured {
        invoice_id: invoice.clone(),
        event_code: "ZE".into(),
        amount: eur("30.00"),
    };
    sim.fail_next_call("pixiPaySetInvoiceCapture", SimFault::HangAfterApply, 1);
    match pixi.apply(&bare(&id), &capture, &op).await {
        Err(ErpError::Unknown(m)) => assert!(m.contains("pixiPaySetInvoiceCapture"), "{m}"),
        other => panic!("expected Unknown, got {other:?}"),
    }
    // The caller asks before writing again (app::run_job does): applied, so no second write.
    assert_eq!(pixi.was_applied(&id, &capture, &op).await, Ok(Some(true)));
    assert_eq!(sim.bookings_for_order(nr).len(), 1, "exactly one booking");
    assert_eq!(sim.calls("pixiPaySetInvoiceCapture"), 1);

    // Same for a manual booking and a comment.
    let credit = sim.create_credit_note(nr, "15.00");
    let op = format!("acme/main/500/credit_note:{credit}/refund_credit");
    let booking = ErpWrite::ManualBooking {
        amount: eur("-15.00"),
        event_code: "RE".into(),
        document: credit,
    };
    sim.fail_next_call("pixiCACreateManualBooking", SimFault::HangAfterApply, 1);
    assert!(matches!(
        pixi.apply(&bare(&id), &booking, &op).await,
        Err(ErpError::Unknown(_))
    ));
    assert_eq!(pixi.was_applied(&id, &booking, &op).await, Ok(Some(true)));
    assert_eq!(sim.bookings_for_order(nr).len(), 2);

    let comment = ErpWrite::Comment {
        text: "refunded".into(),
    };
    sim.fail_next_call("pixiCreateOrderComment", SimFault::HangAfterApply, 1);
    assert!(matches!(
        pixi.apply(&bare(&id), &comment, "c1").await,
        Err(ErpError::Unknown(_))
    ));
    assert_eq!(pixi.was_applied(&id, &comment, "c1").await, Ok(Some(true)));
    assert_eq!(sim.comments(nr).len(), 1);

    // Why the read-back matters: pixi's capture call is not idempotent.
    pixi.apply(&bare(&id), &capture, "blind retry")
        .await
        .expect("second capture");
    assert_eq!(
        sim.bookings_for_order(nr)
            .iter()
            .filter(|b| b.source == BookingSource::Capture)
            .count(),
        2
    );
}

#[tokio::test]
async fn hostile_comment_text_is_escaped() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(600, "U").line(1, "1.00"));
    let pixi = erp(&sim, &["U"]);
    let hostile = "1 < 2 && 3 > 2 ]]> <![CDATA[x]]> </Comment><OrderNr>1</OrderNr> \"q\" 'a' &amp; \u{7}bell ü€";
    let w = ErpWrite::Comment {
        text: hostile.into(),
    };
    pixi.apply(&bare(&nr.to_string()), &w, "op-x")
        .await
        .expect("comment");
    // XML 1.0 cannot carry U+0007: it is dropped, everything else arrives verbatim.
    let stored = sim.comments(nr);
    assert_eq!(
        stored,
        vec![format!("{} {}", tag("op-x"), hostile.replace('\u{7}', ""))]
    );
    assert_eq!(
        pixi.was_applied(&nr.to_string(), &w, "op-x").await,
        Ok(Some(true))
    );
    let req = sim
        .requests()
        .into_iter()
        .find(|r| r.call == "pixiCreateOrderComment")
        .expect("logged");
    assert_eq!(
        req.params.len(),
        2,
        "the text could not inject parameters: {req:?}"
    );
}

#[tokio::test]
async fn simulator_refuses_what_pixi_refuses() {
    let sim = PixiSim::start().await;
    let client = reqwest::Client::new();
    let post = |call: &str, params: &[(&'static str, &str)]| {
        let body = soap::envelope(
            &sim.url(),
            call,
            &params
                .iter()
                .map(|(k, v)| soap::Param::string(k, *v))
                .collect::<Vec<_>>(),
        );
        client
            .post(sim.url())
            .basic_auth(sim.user(), Some(sim.password()))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{}{call}\"", sim.url()))
            .body(body)
            .send()
    };
    let fault = |status: u16, text: &str| {
        assert_eq!(status, 500);
        match soap::parse_reply(text) {
            Err(soap::ReplyError::Fault { message, .. }) => message,
            other => panic!("expected a SOAP fault, got {other:?}"),
        }
    };
    let r = post("pixiDoesNotExist", &[]).await.expect("http");
    let m = fault(r.status().as_u16(), &r.text().await.expect("body"));
    assert!(m.contains("Could not find stored procedure"), "{m}");
    let r = post("pixiGetChangedOrders", &[]).await.expect("http");
    let m = fault(r.status().as_u16(), &r.text().await.expect("body"));
    assert!(m.contains("expects parameter '@DateTimeFrom'"), "{m}");
    let r = post(
        "pixiSetOrderShippingLock",
        &[("Locked", "1"), ("OrderNr", "1")],
    )
    .await
    .expect("http");
    let m = fault(r.status().as_u16(), &r.text().await.expect("body"));
    assert!(m.contains("out of the documented order"), "{m}");
    let r = post("pixiGetOrderHeader", &[("OrderNr", "abc")])
        .await
        .expect("http");
    let m = fault(r.status().as_u16(), &r.text().await.expect("body"));
    assert!(m.contains("Error converting"), "{m}");
    let r = client
        .post(sim.url())
        .header("Content-Type", "text/xml")
        .body("<x/>")
        .send()
        .await
        .expect("http");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("www-authenticate").is_some());

    // A well-formed reply has the stored pixi shape: Response/Result, SqlRowSet diffgram, code 0.
    let r = post(
        "pixiGetChangedOrders",
        &[("DateTimeFrom", "2000-01-01 00:00:00")],
    )
    .await
    .expect("http");
    let text = r.text().await.expect("body");
    assert!(
        text.contains("<method:pixiGetChangedOrdersResponse>")
            && text.contains("<method:pixiGetChangedOrdersResult>")
    );
    let reply = soap::parse_reply(&text).expect("reply");
    assert_eq!(reply.result_code, Some(0));
    assert!(reply.rows().is_empty());
}

#[tokio::test]
async fn for_connection_resolves_the_password_and_payment_codes() {
    let sim = PixiSim::start().await;
    let toml = format!(
        r#"
[tenant]
id = "acme"

[[erp]]
id = "main"
kind = "pixi"
url = "{url}"
user = "{user}"
password = "plain:{pw}"

[[method]]
erp = "main"
mandant = "SHP"
erp_method = "U"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-x"
private_key = "plain:s-priv-x"

[[method]]
erp = "main"
mandant = "SHP"
erp_method = "V"
psp = "unzer"
active = false
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "s-pub-y"
private_key = "plain:s-priv-y"
"#,
        url = sim.url(),
        user = sim.user(),
        pw = sim.password()
    );
    let cfg = Config::parse(&toml, "t.toml").expect("config");
    let pixi = PixiErp::for_connection(&cfg, "main").expect("connector");
    assert_eq!(pixi.payment_codes(), ["U".to_string()]);
    assert!(!format!("{pixi:?}").contains(&sim.password()));
    pixi.changes(None).await.expect("authenticated");
    assert!(PixiErp::for_connection(&cfg, "other").is_err());
    let e = PixiErp::for_connection_with(&cfg, "main", |_| {
        Err("environment variable PIXI_PW is not set".into())
    })
    .expect_err("secret");
    assert!(e.to_string().contains("PIXI_PW") && !e.to_string().contains(&sim.password()));
}

/// The order facts as the connector reads them (with `CustKey`).
async fn read_facts(pixi: &PixiErp, nr: i64) -> ErpOrder {
    pixi.orders(&[nr.to_string()])
        .await
        .expect("orders")
        .remove(0)
}

/// https://pixi-api-docs.de/api/pixiGetCustomerOrderAccount: the customer's `CeMail` of the
/// "Customer information" set, asked with the `CustKey` of the order facts (one call, no header
/// read, only the required parameter); the "Detail customer information" set beside it is not
/// taken for it.
#[tokio::test]
async fn pixi_customer_email_found_with_the_orders_cust_key() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(1501, "P")
            .customer(7701)
            .customer_email(" kunde.7701@example.de ")
            .line(1, "10.00"),
    );
    // Another customer's address must not be the answer.
    sim.add_order(
        NewOrder::new(1502, "P")
            .customer(7702)
            .customer_email("other@example.de")
            .line(1, "1.00"),
    );
    let pixi = erp(&sim, &["P"]);
    let facts = read_facts(&pixi, nr).await;
    assert_eq!(facts.customer_key.as_deref(), Some("7701"));
    sim.clear_log();
    let email = pixi.customer_email(&facts).await.expect("answer");
    assert_eq!(email.as_deref(), Some("kunde.7701@example.de"));
    let log = sim.requests();
    assert_eq!(
        call_names(&sim),
        ["pixiGetCustomerOrderAccount"],
        "no header read"
    );
    assert_eq!(
        log[0].params,
        [("CustKey".to_string(), "7701".to_string())],
        "CustKey only, as an integer"
    );
    assert!(
        log[0]
            .soap_action
            .as_deref()
            .is_some_and(|a| a.ends_with("pixiGetCustomerOrderAccount")),
        "{:?}",
        log[0].soap_action
    );
}

/// Order facts without `CustKey` (known only by number): the header is read for it first, as
/// for a booking, and the request carries the header's `CustKey`.
#[tokio::test]
async fn pixi_customer_email_reads_the_cust_key_from_the_header_when_missing() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(1511, "P")
            .customer(7711)
            .customer_email("kunde@example.de")
            .line(1, "10.00"),
    );
    let pixi = erp(&sim, &["P"]);
    sim.clear_log();
    let email = pixi
        .customer_email(&bare(&nr.to_string()))
        .await
        .expect("answer");
    assert_eq!(email.as_deref(), Some("kunde@example.de"));
    assert_eq!(
        call_names(&sim),
        ["pixiGetOrderHeader", "pixiGetCustomerOrderAccount"]
    );
    assert_eq!(sim.requests()[1].param("CustKey"), Some("7711"));

    // An order pixi does not know is refused by the header read; nothing else is asked.
    sim.clear_log();
    let e = pixi
        .customer_email(&bare("999999"))
        .await
        .expect_err("no such order");
    assert!(matches!(e, ErpError::Refused(_)), "{e:?}");
    assert_eq!(call_names(&sim), ["pixiGetOrderHeader"]);
}

/// No address: a customer without `CeMail` (NULL, left out of the row), one set to blanks, and
/// a customer pixi does not know (empty "Customer information") are all `None`, not errors.
#[tokio::test]
async fn pixi_customer_email_none_when_pixi_has_none() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(1521, "P").customer(7721).line(1, "10.00"));
    let pixi = erp(&sim, &["P"]);
    let facts = read_facts(&pixi, nr).await;
    assert_eq!(pixi.customer_email(&facts).await, Ok(None), "no CeMail");

    sim.set_customer_email(7721, Some("   "));
    assert_eq!(pixi.customer_email(&facts).await, Ok(None), "blank CeMail");

    sim.set_customer_email(7721, Some("kunde@example.de"));
    assert_eq!(
        pixi.customer_email(&facts)
            .await
            .expect("answer")
            .as_deref(),
        Some("kunde@example.de")
    );
    sim.set_customer_email(7721, None);
    assert_eq!(pixi.customer_email(&facts).await, Ok(None), "removed");

    let mut stranger = facts.clone();
    stranger.customer_key = Some("424242".into());
    sim.clear_log();
    assert_eq!(
        pixi.customer_email(&stranger).await,
        Ok(None),
        "unknown customer"
    );
    assert_eq!(sim.requests()[0].param("CustKey"), Some("424242"));
}

/// A malformed address is `None` (with a warning), never an error that stops the order: no
/// `@`, two `@`, a blank, a header smuggled in with a line break, a list, a display name, more
/// than 254 characters.
#[tokio::test]
async fn pixi_customer_email_malformed_is_none_not_an_error() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(NewOrder::new(1531, "P").customer(7731).line(1, "10.00"));
    let pixi = erp(&sim, &["P"]);
    let facts = read_facts(&pixi, nr).await;
    let too_long = format!("{}@example.de", "a".repeat(250));
    for bad in [
        "kunde.example.de",
        "kunde@@example.de",
        "ku@nde@example.de",
        "kun de@example.de",
        "kunde@example.de\r\nBcc: victim@example.org",
        "kunde@example.de\nBcc: victim@example.org",
        "a@example.de, b@example.de",
        "Kunde <kunde@example.de>",
        too_long.as_str(),
    ] {
        sim.set_customer_email(7731, Some(bad));
        assert_eq!(
            pixi.customer_email(&facts).await,
            Ok(None),
            "{bad:?} must not be used"
        );
    }
    // At the limit it is used.
    let longest = format!("{}@example.de", "a".repeat(243));
    assert_eq!(longest.len(), 254);
    sim.set_customer_email(7731, Some(&longest));
    assert_eq!(
        pixi.customer_email(&facts)
            .await
            .expect("answer")
            .as_deref(),
        Some(longest.as_str())
    );
}

/// Failures of the call itself stay errors (the caller retries or reports them): a pixi
/// without the procedure is refused, a 503 is unavailable.
#[tokio::test]
async fn pixi_customer_email_call_failures_are_errors() {
    let sim = PixiSim::start().await;
    let nr = sim.add_order(
        NewOrder::new(1541, "P")
            .customer(7741)
            .customer_email("kunde@example.de")
            .line(1, "10.00"),
    );
    let pixi = erp(&sim, &["P"]);
    let facts = read_facts(&pixi, nr).await;
    sim.fail_next_call("pixiGetCustomerOrderAccount", SimFault::Unavailable, 1);
    assert!(matches!(
        pixi.customer_email(&facts).await,
        Err(ErpError::Unavailable(_))
    ));
    sim.uninstall("pixiGetCustomerOrderAccount");
    let e = pixi
        .customer_email(&facts)
        .await
        .expect_err("not installed");
    assert!(
        matches!(&e, ErpError::Refused(m) if m.contains("pixiGetCustomerOrderAccount")),
        "{e:?}"
    );
}
