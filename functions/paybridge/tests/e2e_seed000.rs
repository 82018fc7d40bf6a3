//! End-to-end proof of issue 12 ("seed 000 to the letter") over the wire: the real pixi SOAP
//! and Unzer REST connectors against their simulators on loopback, the app built exactly as
//! `paybridge serve` builds it on SQLite, webhooks through the real router (`demo::Harness`).
//! The orders are the catalogue's (`paybridge demo` prints the same); these tests check the
//! intermediate states a one-line summary cannot show: hints while waiting, the request logs
//! (which calls reached pixi and Unzer, and which did not), ERP comments, e-mails.
//!
//! Named after behaviour.md: `e2e_3_1_…` (release: pending payments, pixi's order totals with
//! discount and freight, an authorization expired before the import), `e2e_3_2_…` (transfer
//! data in the customer-service fields), `e2e_3_3_…` (authorization lifetime at capture),
//! `e2e_3_9_…` (an order taken out of automation and put back).

mod common;
use common::*;

use paybridge::demo::{EndState, Harness, Options, Running, Step};
use paybridge_core::engine::{Flag, Severity};
use paybridge_core::ledger::{OpStatus, Purpose};
use paybridge_core::store::repo::{OrderRecord, Repo};
use paybridge_testkit::smtp_sink::{SinkOptions, SmtpSink};
use paybridge_testkit::unzer_sim::sim_bank_data;
use rust_decimal::Decimal;

// ------------------------------------------------------------------------------- helpers

/// The record's flag whose code starts with `code`, if any.
fn flag<'r>(rec: &'r OrderRecord, code: &str) -> Option<&'r Flag> {
    rec.flags
        .iter()
        .find(|f| f.code.split(':').next() == Some(code))
}

/// Comments of the order containing `needle`.
fn comments_with(h: &Harness, order: i64, needle: &str) -> Vec<String> {
    h.pixi
        .comments(order)
        .into_iter()
        .filter(|c| c.contains(needle))
        .collect()
}

/// The invoice pixi wrote for line `i` of the order.
fn invoice_of_line(h: &Harness, order: i64, i: usize) -> String {
    h.pixi.order(order).expect("order").lines[i]
        .invoice_nr
        .clone()
        .expect("the line is invoiced")
}

// ------------------------------------------------------------------------------- §3.2 transfer data

/// Seed 000: Unzer Invoice and Invoice Secured get the transfer details written into pixi's
/// customer-service fields at release, exactly like prepayment: account holder = recipient,
/// IBAN, BIC, bank = the payment reference (descriptor) the customer must quote.
#[tokio::test]
async fn e2e_3_2_invoice_and_invoice_secured_write_the_four_transfer_fields_at_release() {
    let h = harness().await;
    let mut runs = Vec::new();
    for key in ["3.2-invoice-secured-transfer", "3.2-invoice-transfer"] {
        runs.push(h.import(&scenario(key)).await.expect("import"));
    }
    settle(&h).await;
    for r in &runs {
        let order = r.scenario.order;
        let p = pid(r);
        let n: u64 = p
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("s-pay-N");
        let bank = sim_bank_data(n);
        let fields = h.pixi.transfer_fields(order).expect("a billing address");
        assert_eq!(
            fields.holder.as_deref(),
            Some(bank.holder.as_str()),
            "{order}: holder = recipient"
        );
        assert_eq!(
            fields.iban.as_deref(),
            Some(bank.iban.as_str()),
            "{order}: IBAN"
        );
        assert_eq!(
            fields.bic.as_deref(),
            Some(bank.bic.as_str()),
            "{order}: BIC"
        );
        assert_eq!(
            fields.bank_name.as_deref(),
            Some(bank.descriptor.as_str()),
            "{order}: bank = the payment reference"
        );
        let o = h.pixi.order(order).expect("order");
        assert_eq!(
            (o.status.as_str(), o.shipping_lock),
            ("OPEN", false),
            "{order}: released, no lock"
        );
        assert_eq!(
            comments_with(&h, order, "order released with the transfer details").len(),
            1,
            "{order}: {:?}",
            h.pixi.comments(order)
        );
        assert_eq!(unzer_posts(&h, &p), 0, "{order}: no money call at release");
        let rec = record(&h, order).await;
        assert!(rec.flags.is_empty(), "{order}: no problem: {:?}", rec.flags);
    }
    // The invoice-secured order stays released (its end state); the invoice order is shipped:
    // no shipment call for the unsecured type, booked on close, transfer fields kept.
    let (secured, mut invoice) = (runs.remove(0), runs.remove(0));
    assert_final(&h, &secured).await;
    step(&h, &mut invoice, Step::Ship(vec![])).await;
    settle(&h).await;
    assert_eq!(
        txs(&h, &pid(&invoice), "shipment").len(),
        0,
        "ivc takes no shipment call"
    );
    let nr = invoice_of_line(&h, invoice.scenario.order, 0);
    let booked: Vec<_> = h
        .pixi
        .requests()
        .into_iter()
        .filter(|q| {
            q.call == "pixiPaySetInvoiceCapture" && q.param("InvoiceNr") == Some(nr.as_str())
        })
        .collect();
    assert_eq!(booked.len(), 1, "booked once on close");
    assert_eq!(booked[0].param("EventID"), Some("IV"));
    let fields = h
        .pixi
        .transfer_fields(invoice.scenario.order)
        .expect("address");
    assert!(fields.iban.is_some(), "the transfer fields stay");
    assert_final(&h, &invoice).await;
}

// ------------------------------------------------------------------------------- §3.3 lifetime

/// A card authorization 5½ days old (7 days valid, the hint in the last quarter): released as
/// usual with an `authorization_expiring` hint, the shipped invoice is captured normally, and
/// the order asks to be looked at again when the authorization expires.
#[tokio::test]
async fn e2e_3_3_authorization_in_its_last_quarter_gives_a_hint_and_is_released_and_captured() {
    let h = harness().await;
    let mut r = h
        .import(&scenario("3.3-authorization-expiring"))
        .await
        .expect("import");
    let p = pid(&r);
    let order = r.scenario.order;
    settle(&h).await;

    let s = state(&h, &r).await;
    assert_eq!(
        (s.erp.status.as_str(), s.erp.locked),
        ("OPEN", false),
        "released, no lock"
    );
    assert_eq!(s.hints, vec!["authorization_expiring".to_string()]);
    assert!(
        s.problems.is_empty(),
        "a hint, not an error: {:?}",
        s.problems
    );
    let rec = record(&h, order).await;
    let hint = flag(&rec, "authorization_expiring").expect("the hint");
    assert_eq!(hint.severity, Severity::Hint);
    let expires = h.now() + chrono::Duration::hours(36);
    assert!(
        hint.message
            .contains(&expires.format("%Y-%m-%d").to_string())
            || hint.message.contains(
                &(expires - chrono::Duration::minutes(5))
                    .format("%Y-%m-%d")
                    .to_string()
            ),
        "the hint names the expiry day: {}",
        hint.message
    );
    let recheck = rec.recheck_at.expect("looked at again at the expiry");
    let until = recheck - h.now();
    assert!(
        until > chrono::Duration::hours(35) && until < chrono::Duration::hours(37),
        "recheck at the expiry (in ~36 h), not {until}"
    );
    assert_eq!(unzer_posts(&h, &p), 0, "expert mode: nothing captured yet");
    assert!(
        comments_with(&h, order, "ERROR").is_empty(),
        "a hint writes no error comment"
    );

    step(&h, &mut r, Step::Ship(vec![0])).await;
    settle(&h).await;
    let charges = txs(&h, &p, "charge");
    assert_eq!(charges.len(), 1, "the invoice is captured despite the hint");
    assert_eq!(charges[0].amount, dec("60"));
    assert_eq!(unzer_posts(&h, &p), 1);
    assert_final(&h, &r).await; // hint still there: 40.00 is still to capture
}

/// The same authorization (6¼ days old at release, hint) expires while the order waits: a day
/// later the goods are shipped. No capture reaches Unzer (it would refuse it), the error
/// `authorization_expired` names the invoice, pixi gets one comment, and it stays one.
#[tokio::test]
async fn e2e_3_3_expired_authorization_sends_no_capture_and_raises_an_error_with_one_comment() {
    let h = harness().await;
    let mut r = h
        .import(&scenario("3.3-authorization-expired"))
        .await
        .expect("import");
    let p = pid(&r);
    let order = r.scenario.order;
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(
        (s.erp.status.as_str(), s.erp.locked),
        ("OPEN", false),
        "released while valid"
    );
    assert_eq!(s.hints, vec!["authorization_expiring".to_string()]);

    // A day passes (the demo's shared clock jump), then pixi ships everything.
    step(&h, &mut r, Step::ClockAhead(25)).await;
    step(&h, &mut r, Step::Ship(vec![])).await;
    let invoice = invoice_of_line(&h, order, 0);
    h.unzer.clear_log();
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 0, "no capture POST after expiry");
    assert!(txs(&h, &p, "charge").is_empty());
    assert!(
        h.unzer.requests().iter().all(|q| q.method == "GET"),
        "only reads: {:?}",
        h.unzer.requests()
    );
    assert_eq!(
        h.pixi
            .requests()
            .iter()
            .filter(|q| q.call == "pixiPaySetInvoiceCapture")
            .count(),
        0,
        "the invoice is not marked captured"
    );
    let rec = record(&h, order).await;
    let err = flag(&rec, "authorization_expired").expect("the error");
    assert_eq!(err.severity, Severity::Error);
    assert!(
        err.message
            .contains(&format!("no capture sent for invoice {invoice}")),
        "{}",
        err.message
    );
    assert!(
        flag(&rec, "authorization_expiring").is_none(),
        "the hint is gone"
    );
    let comments = comments_with(&h, order, "ERROR the authorization of");
    assert_eq!(comments.len(), 1, "{:?}", h.pixi.comments(order));
    assert!(comments[0].contains("expired on"), "{}", comments[0]);

    // Looking again changes nothing: still no capture, still one comment.
    h.advance(chrono::Duration::hours(1));
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 0);
    assert_eq!(
        comments_with(&h, order, "ERROR the authorization of").len(),
        1
    );
    assert_final(&h, &r).await;
}

/// Expired before paybridge first sees the order: released, but with shipping lock and an
/// error (the check of §3.1.4), and no capture is ever tried.
#[tokio::test]
async fn e2e_3_1_authorization_expired_before_the_import_is_released_with_shipping_lock() {
    let h = harness().await;
    let r = h
        .import(&scenario("3.1-authorization-expired"))
        .await
        .expect("import");
    settle(&h).await;
    let order = r.scenario.order;
    let o = h.pixi.order(order).expect("order");
    assert!(o.shipping_lock, "locked");
    assert_eq!(
        comments_with(
            &h,
            order,
            "released WITH SHIPPING LOCK: the authorization of"
        )
        .len(),
        1,
        "{:?}",
        h.pixi.comments(order)
    );
    assert_eq!(unzer_posts(&h, &pid(&r)), 0);
    assert_final(&h, &r).await;
}

// ------------------------------------------------------------------------------- §3.1 pending

/// A payment still pending at import stays on HOLD with a `pending` hint (no comment, no
/// e-mail); once it has been pending for `pending_error_after_hours` (24) since paybridge
/// first saw it, it is the error `pending_too_long`: one ERP comment, the error mark, one
/// e-mail. The order stays on HOLD throughout and nothing is asked of Unzer but reads.
#[tokio::test]
async fn e2e_3_1_payment_pending_24_hours_becomes_an_error_with_comment_flag_and_email() {
    let sink = SmtpSink::start(SinkOptions::default());
    let smtp = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"paybridge@example.com\"\nto = \"ops@example.com\"\nstarttls = false\n",
        sink.port()
    );
    let h = Harness::start_with(Options {
        extra_config: Some(smtp),
        ..Options::default()
    })
    .await
    .expect("the harness starts");
    let r = h
        .import(&scenario("3.1-pending-too-long"))
        .await
        .expect("import");
    let order = r.scenario.order;
    let p = pid(&r);
    settle(&h).await;

    let hold = |s: &EndState| (s.erp.status.clone(), s.erp.locked);
    let s = state(&h, &r).await;
    assert_eq!(hold(&s), ("HOLD".to_string(), false));
    assert_eq!(s.hints, vec!["pending".to_string()]);
    assert!(s.problems.is_empty());
    assert!(
        h.pixi.comments(order).is_empty(),
        "a hint writes no comment"
    );
    assert!(sink.mails().is_empty(), "and sends no e-mail");
    let rec = record(&h, order).await;
    let first_seen = rec.first_seen_at.expect("first seen");
    assert_eq!(
        rec.recheck_at,
        Some(first_seen + chrono::Duration::hours(24)),
        "looked at again when the 24 h are up"
    );

    // 23 hours later: still a hint.
    h.advance(chrono::Duration::hours(23));
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(s.hints, vec!["pending".to_string()], "{s}");
    assert!(s.problems.is_empty(), "{s}");

    // Past 24 hours: the error, with its comment and e-mail; still HOLD.
    h.advance(chrono::Duration::hours(2));
    settle(&h).await;
    let s = state(&h, &r).await;
    assert_eq!(hold(&s), ("HOLD".to_string(), false), "still on hold");
    assert_eq!(s.problems, vec!["pending_too_long".to_string()]);
    assert!(s.hints.is_empty(), "the hint became the error: {s}");
    let rec = record(&h, order).await;
    let err = flag(&rec, "pending_too_long").expect("the error mark");
    assert_eq!(err.severity, Severity::Error);
    assert!(err.message.contains("more than 24 h"), "{}", err.message);
    let comments = comments_with(&h, order, "ERROR the payment has been pending since");
    assert_eq!(comments.len(), 1, "{:?}", h.pixi.comments(order));
    let mails = sink.mails();
    let ours: Vec<_> = mails
        .iter()
        .filter(|m| m.subject.contains(&format!("order {order} ")))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one e-mail: {:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    assert!(ours[0].body.contains("pending"), "{}", ours[0].body);
    assert_eq!(pixi_calls(&h, "pixiReleaseOrder", order), 0);
    assert_eq!(h.pixi.calls("pixiReleaseOrder"), 0, "never released");
    assert_eq!(unzer_posts(&h, &p), 0);

    // Again later: no second comment, no second e-mail.
    h.advance(chrono::Duration::hours(1));
    settle(&h).await;
    assert_eq!(
        comments_with(&h, order, "ERROR the payment has been pending since").len(),
        1
    );
    assert_eq!(sink.mails().len(), mails.len());
    assert_final(&h, &r).await;
}

// ------------------------------------------------------------------------------- §3.1 totals

/// Reads pixiGetOrderTotals for `order` straight off the simulator's SOAP endpoint (as the
/// connector does) and returns the rows' (Subtotal, ShipCost, Discount) texts.
async fn order_total_rows(h: &Harness, order: i64) -> Vec<(String, String, String)> {
    let ns = "https://api.pixi.eu/soap/pixiAPP/";
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><pixiGetOrderTotals xmlns="{ns}"><OrderNr>{order}</OrderNr></pixiGetOrderTotals></soap:Body></soap:Envelope>"#
    );
    let text = reqwest::Client::new()
        .post(h.pixi.url())
        .basic_auth(h.pixi.user(), Some(h.pixi.password()))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{ns}pixiGetOrderTotals\""))
        .body(body)
        .send()
        .await
        .expect("pixi answers")
        .text()
        .await
        .expect("a body");
    let cell = |row: &str, name: &str| -> String {
        let open = format!("<{name}>");
        row.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(v, _)| v.to_string())
            .unwrap_or_default()
    };
    text.split("<row>")
        .skip(1)
        .map(|row| {
            (
                cell(row, "Subtotal"),
                cell(row, "ShipCost"),
                cell(row, "Discount"),
            )
        })
        .collect()
}

/// pixi as its public pages document it: pixiGetOrderTotals has one row per item with the
/// order's ShipCost and Discount repeated on each; the connector adds Σ Subtotal + ShipCost −
/// |Discount| (each order-level column once). A three-line order with 4.95 freight and a 10.00
/// discount (83.19) matches the Unzer authorization to the cent: released without lock or
/// problem, and both invoices (the first with freight and discount) are captured exactly.
#[tokio::test]
async fn e2e_3_1_discounted_multi_line_order_with_freight_reconciles_to_the_cent() {
    let h = harness().await;
    let mut r = h
        .import(&scenario("3.1-discount-freight"))
        .await
        .expect("import");
    let order = r.scenario.order;
    let p = pid(&r);
    assert_eq!(r.scenario.total(), 8319);
    settle(&h).await;

    assert!(
        pixi_calls(&h, "pixiGetOrderTotals", order) >= 1,
        "the total comes from pixiGetOrderTotals"
    );
    let o = h.pixi.order(order).expect("order");
    assert_eq!(
        (o.status.as_str(), o.shipping_lock),
        ("OPEN", false),
        "released, no lock"
    );
    assert_eq!(pixi_calls(&h, "pixiSetOrderShippingLock", order), 0);
    let rec = record(&h, order).await;
    assert!(
        rec.flags.is_empty(),
        "no problem, no amount mismatch: {:?}",
        rec.flags
    );
    let facts = rec.facts.as_ref().expect("facts");
    assert_eq!(facts.total.amount(), dec("83.19"), "Σ rows to the cent");
    assert_eq!(facts.lines.len(), 3);
    assert_eq!(
        comments_with(&h, order, "authorization checked, order released").len(),
        1,
        "{:?}",
        h.pixi.comments(order)
    );
    assert_eq!(unzer_posts(&h, &p), 0);

    step(&h, &mut r, Step::Ship(vec![0])).await;
    settle(&h).await;
    step(&h, &mut r, Step::Ship(vec![1, 2])).await;
    settle(&h).await;
    let charges: Vec<Decimal> = txs(&h, &p, "charge").iter().map(|t| t.amount).collect();
    assert_eq!(
        charges,
        vec![dec("24.94"), dec("58.25")],
        "29.99 + 4.95 − 10.00, then 45.50 + 12.75"
    );
    assert_final(&h, &r).await;

    // The rows pixi returned: one per item, freight and discount repeated on each.
    let rows = order_total_rows(&h, order).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let subtotal: Decimal = rows.iter().map(|(s, _, _)| dec(s)).sum();
    assert_eq!(subtotal, dec("88.24"));
    assert!(
        rows.iter()
            .all(|(_, ship, disc)| dec(ship) == dec("4.95") && dec(disc) == dec("10.00")),
        "{rows:?}"
    );
}

// ------------------------------------------------------------------------------- §3.9 hands-off

/// An operator takes an order out of automation: one pixi comment, the `hands_off` hint, and
/// the shipped invoice is **not** captured (no POST reaches Unzer, pixi's invoice stays open).
/// Put back: one comment, and the capture happens, exactly once.
#[tokio::test]
async fn e2e_3_9_hands_off_order_is_not_captured_and_is_captured_once_back_on() {
    let h = harness().await;
    let mut r = h.import(&scenario("3.9-hands-on")).await.expect("import");
    let order = r.scenario.order;
    let p = pid(&r);
    let key = h.order_key(order);
    settle(&h).await;
    assert_eq!(h.pixi.order(order).expect("order").status, "OPEN");

    assert!(h.app.set_hands_off(&key, true, h.now()).await.expect("off"));
    assert!(
        !h.app
            .set_hands_off(&key, true, h.now())
            .await
            .expect("off again"),
        "already off: nothing changes"
    );
    settle(&h).await;
    let out_comment = "taken out of automation by an operator";
    assert_eq!(
        comments_with(&h, order, out_comment).len(),
        1,
        "{:?}",
        h.pixi.comments(order)
    );
    let s = state(&h, &r).await;
    assert_eq!(s.hints, vec!["hands_off".to_string()]);
    assert!(s.problems.is_empty(), "a hint, not an error");

    step(&h, &mut r, Step::Ship(vec![])).await;
    let invoice = invoice_of_line(&h, order, 0);
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 0, "no capture while hands-off");
    assert!(txs(&h, &p, "charge").is_empty());
    let inv = h.pixi.invoice(&invoice).expect("invoice");
    assert!(!inv.paid, "the invoice is not marked captured");
    let s = state(&h, &r).await;
    assert_eq!(s.erp.status, "CLOSED");
    assert_eq!(s.hints, vec!["hands_off".to_string()]);
    assert!(s.erp.bookings.is_empty());
    h.advance(chrono::Duration::hours(1));
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 0, "still nothing later");
    assert_eq!(
        comments_with(&h, order, out_comment).len(),
        1,
        "commented once"
    );

    assert!(h.app.set_hands_off(&key, false, h.now()).await.expect("on"));
    settle(&h).await;
    assert_eq!(
        comments_with(&h, order, "back in automation").len(),
        1,
        "{:?}",
        h.pixi.comments(order)
    );
    let charges = txs(&h, &p, "charge");
    assert_eq!(charges.len(), 1, "captured once back on");
    assert_eq!(charges[0].amount, dec("100"));
    assert_eq!(unzer_posts(&h, &p), 1);
    assert!(h.pixi.invoice(&invoice).expect("invoice").paid);
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 1, "exactly once");
    assert_eq!(comments_with(&h, order, "back in automation").len(), 1);
    assert_final(&h, &r).await;
}

/// Taken out between the poll that planned a capture and the worker that would send it: the
/// unstarted capture is cancelled and never reaches Unzer.
#[tokio::test]
async fn e2e_3_9_hands_off_cancels_a_planned_capture_that_has_not_started() {
    let h = harness().await;
    let mut r = h.import(&scenario("3.9-hands-off")).await.expect("import");
    let order = r.scenario.order;
    let p = pid(&r);
    settle(&h).await;
    step(&h, &mut r, Step::Ship(vec![])).await;
    let report = h.app.poll_cycle(h.now()).await.expect("poll");
    assert!(
        report.ops_planned >= 1,
        "the capture is planned: {report:?}"
    );
    let ops = Repo::new(h.app.store.as_ref())
        .ops(&h.order_key(order), h.now())
        .await
        .expect("store");
    assert!(
        ops.iter()
            .any(|o| o.plan.purpose == Purpose::CaptureInvoice && o.status == OpStatus::Planned),
        "{ops:?}"
    );

    assert!(
        h.app
            .set_hands_off(&h.order_key(order), true, h.now())
            .await
            .expect("off")
    );
    settle(&h).await;
    assert_eq!(unzer_posts(&h, &p), 0, "the planned capture never went out");
    let ops = Repo::new(h.app.store.as_ref())
        .ops(&h.order_key(order), h.now())
        .await
        .expect("store");
    let capture = ops
        .iter()
        .find(|o| o.plan.purpose == Purpose::CaptureInvoice)
        .expect("the capture operation");
    assert_eq!(capture.status, OpStatus::Cancelled);
    assert_final(&h, &r).await;
}

// ------------------------------------------------------------------------------- §3.3/§3.5 outside

/// Runs one catalogue scenario to its end and asserts the end state.
async fn run_one(h: &Harness, key: &str) -> Running {
    let mut r = h.prepare(&scenario(key));
    let phases = r.scenario.phases.clone();
    for steps in &phases {
        for s in steps {
            step(h, &mut r, s.clone()).await;
        }
        settle(h).await;
    }
    assert_final(h, &r).await;
    r
}

/// An invoice pixi marks paid that paybridge did not capture (captured in the Unzer portal):
/// skipped with a `captured_elsewhere` hint naming it, never captured again, and expert mode
/// still closes the payment after the last delivery (the cancelled line's 20.00 reversed once).
#[tokio::test]
async fn e2e_3_3_invoice_captured_outside_paybridge_is_named_and_the_payment_still_closed() {
    let h = harness().await;
    let r = run_one(&h, "3.3-captured-elsewhere").await;
    let order = r.scenario.order;
    let p = pid(&r);
    let foreign = invoice_of_line(&h, order, 0);
    let rec = record(&h, order).await;
    let hint = flag(&rec, "captured_elsewhere").expect("the hint");
    assert_eq!(hint.code, format!("captured_elsewhere:{foreign}"));
    assert!(hint.message.contains(&foreign), "{}", hint.message);
    let charges: Vec<Decimal> = txs(&h, &p, "charge").iter().map(|t| t.amount).collect();
    assert_eq!(
        charges,
        vec![dec("50"), dec("30")],
        "50.00 outside, 30.00 by paybridge"
    );
    let marked: Vec<String> = h
        .pixi
        .requests()
        .into_iter()
        .filter(|q| q.call == "pixiPaySetInvoiceCapture")
        .filter_map(|q| q.param("InvoiceNr").map(str::to_string))
        .collect();
    assert_eq!(
        marked,
        vec![invoice_of_line(&h, order, 1)],
        "only paybridge's own invoice"
    );
    let reversals: Vec<Decimal> = txs(&h, &p, "cancel-authorize")
        .iter()
        .map(|t| t.amount)
        .collect();
    assert_eq!(reversals, vec![dec("20")], "closed after the last delivery");
}

/// A credit note naming no invoice on an order with a capture outside paybridge, for more than
/// paybridge captured itself: the error `foreign_capture` (comment, mark), nothing refunded,
/// though Unzer would have let 50.00 be refunded from the charges.
#[tokio::test]
async fn e2e_3_5_credit_note_beyond_paybridges_own_captures_is_refused_not_refunded() {
    let h = harness().await;
    let r = run_one(&h, "3.5-foreign-capture").await;
    let order = r.scenario.order;
    let p = pid(&r);
    let foreign = invoice_of_line(&h, order, 0);
    assert_eq!(
        h.unzer.calls("POST", &format!("/v1/payments/{p}/charges/")),
        0,
        "no refund (charge cancel) was sent"
    );
    assert!(txs(&h, &p, "cancel-charge").is_empty());
    let rec = record(&h, order).await;
    let err = flag(&rec, "foreign_capture").expect("the error");
    assert_eq!(err.severity, Severity::Error);
    assert!(
        err.message.contains(&format!(
            "invoice {foreign} (the credit note names no invoice)"
        )),
        "{}",
        err.message
    );
    assert_eq!(
        comments_with(&h, order, "ERROR credit note").len(),
        1,
        "{:?}",
        h.pixi.comments(order)
    );
    assert_eq!(
        h.pixi.calls("pixiCACreateManualBooking"),
        0,
        "no refund booking"
    );
}
