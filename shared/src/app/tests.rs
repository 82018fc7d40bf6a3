//! `app` tests: whole lifecycles through poll → queue → worker on the real SQLite store and
//! queue, with the in-memory ERP and PSP, on a simulated clock.

use super::*;
use crate::erp::memory::{MemoryErp, line};
use crate::ledger::{self, Operation, Step};
use crate::ledger::{ErpWrite, OpStatus};
use crate::model::{
    BankDetails, CreditNote, ErpOrder, Invoice, LineStatus, OrderStatus, PaymentMethod,
    PaymentState, PspPayment, PspTransaction, TxKind, TxStatus,
};
use crate::money::{Currency, Money};
use crate::notify::recording::RecordingNotifier;
use crate::psp::PspOutcome;
use crate::psp::memory::MemoryPsp;
use crate::queue::sqlite::SqliteQueue;
use crate::store::repo::EventRecord;
use crate::store::sqlite::SqliteStore;
use crate::store::{Item, Store, StoreError, Write};

fn eur(s: &str) -> Money {
    Money::parse(s, Currency::EUR).unwrap()
}

fn config(mode: &str, quiet: &str) -> Config {
    let text = format!(
        r#"
[tenant]
id = "acme"
timezone = "Europe/Berlin"
quiet_hours = "{quiet}"

[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "PSP"
psp = "memory"
mode = "{mode}"
invoice_event = "ZE"
return_event = "RE"
rounding_tolerance = 1
public_key = "s-pub-test"
private_key = "plain:s-priv-test"
"#
    );
    Config::parse(&text, "test.toml").unwrap()
}

struct H {
    app: App,
    erp: MemoryErp,
    psp: MemoryPsp,
    notes: RecordingNotifier,
    now: DateTime<Utc>,
}

/// 2026-11-23 10:00 UTC = 11:00 in Berlin.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn harness(mode: &str, quiet: &str) -> H {
    let erp = MemoryErp::new();
    let psp = MemoryPsp::new();
    let notes = RecordingNotifier::default();
    let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
    erps.insert("main".into(), Arc::new(erp.clone()));
    let app = App {
        config: Arc::new(config(mode, quiet)),
        store: Arc::new(SqliteStore::open_in_memory().unwrap()),
        queue: Arc::new(SqliteQueue::open_in_memory(50).unwrap()),
        erps,
        psp: Arc::new(psp.clone()),
        notifier: Arc::new(notes.clone()),
        settings: Settings::default(),
        holder: "test".into(),
    };
    H {
        app,
        erp,
        psp,
        notes,
        now: t0(),
    }
}

impl H {
    /// Polls and works until the queue is empty, advancing the clock past any backoff.
    async fn drain(&mut self) {
        for _ in 0..40 {
            self.app.poll_cycle(self.now).await.unwrap();
            while self.app.work_once(10, self.now).await.unwrap() > 0 {}
            if self.app.queue.depth().await.unwrap() == 0 {
                return;
            }
            self.now += Duration::minutes(30);
        }
        panic!("queue did not drain");
    }

    fn key(&self, order: &str) -> OrderKey {
        OrderKey::new("acme", "main", order)
    }

    /// PSP events stored and not applied yet.
    async fn pending_events(&self) -> Vec<EventRecord> {
        Repo::new(self.app.store.as_ref())
            .unapplied_events("acme", 10, self.now)
            .await
            .unwrap()
    }

    async fn ops(&self, order: &str) -> Vec<Operation> {
        Repo::new(self.app.store.as_ref())
            .ops(&self.key(order), self.now)
            .await
            .unwrap()
    }
}

fn order(id: &str, pid: &str, lines: &[(&str, &str)]) -> ErpOrder {
    let total = lines
        .iter()
        .fold(eur("0"), |a, (_, amt)| a.checked_add(eur(amt)).unwrap());
    ErpOrder {
        order_id: id.into(),
        mandant: "01".into(),
        shop_order_no: format!("S-{id}"),
        psp_payment_id: Some(pid.into()),
        payment_method: "PSP".into(),
        status: OrderStatus::Hold,
        total,
        lines: lines
            .iter()
            .map(|(l, a)| line(l, LineStatus::Open, eur(a)))
            .collect(),
        shipping_lock: false,
        invoices: vec![],
        credit_notes: vec![],
        customer_key: None,
    }
}

fn card_authorized(pid: &str, amount: &str) -> PspPayment {
    PspPayment {
        payment_id: pid.into(),
        state: PaymentState::Pending,
        method: PaymentMethod::Card,
        currency: Currency::EUR,
        transactions: vec![PspTransaction {
            at: None,
            id: "s-aut-1".into(),
            kind: TxKind::Authorize,
            status: TxStatus::Success,
            amount: eur(amount),
            reference: None,
        }],
        bank_details: None,
        totals_only: false,
    }
}

/// An open card order of one line, invoiced in full as R1, its authorization at the PSP.
fn invoiced_card_order(h: &H, id: &str, pid: &str, amount: &str) -> ErpOrder {
    h.psp.put(card_authorized(pid, amount));
    let mut o = order(id, pid, &[("L1", amount)]);
    o.status = OrderStatus::Open;
    o.invoices.push(invoice("R1", amount));
    o
}

fn invoice(id: &str, amount: &str) -> Invoice {
    Invoice {
        invoice_id: id.into(),
        amount: eur(amount),
        captured: false,
    }
}

fn credit(id: &str, inv: &str, amount: &str) -> CreditNote {
    CreditNote {
        credit_id: id.into(),
        invoice_id: Some(inv.into()),
        amount: eur(amount),
        settled: false,
    }
}

#[tokio::test]
async fn lifecycle_expert_mode_capture_per_invoice_close_and_refund() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-1", "100.00"));
    h.erp.upsert(order(
        "1001",
        "s-pay-1",
        &[("L1", "60.00"), ("L2", "40.00")],
    ));
    h.drain().await;

    let o = h.erp.order("1001").unwrap();
    assert_eq!(o.status, OrderStatus::Open, "released");
    assert!(!o.shipping_lock);
    assert_eq!(
        h.psp.money_calls("s-pay-1"),
        0,
        "expert mode: nothing captured at release"
    );
    assert!(
        h.erp
            .comments("1001")
            .iter()
            .any(|c| c.contains("released"))
    );

    // Ship L1, cancel L2, invoice and close.
    h.erp.edit("1001", |o| {
        o.lines[0].status = LineStatus::Shipped;
        o.lines[1].status = LineStatus::Cancelled;
        o.invoices.push(invoice("R1", "60.00"));
        o.status = OrderStatus::Closed;
    });
    h.drain().await;
    let pos = h.psp.payment("s-pay-1").unwrap().position().unwrap();
    assert_eq!(pos.charged, eur("60.00"));
    assert_eq!(
        pos.reversed,
        eur("40.00"),
        "payment closed after the last delivery"
    );
    assert!(pos.remaining().unwrap().is_zero());
    assert!(h.erp.order("1001").unwrap().invoices[0].captured);
    let b = h.erp.bookings("1001");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0].document.as_str(),
            b[0].event_code.as_str(),
            b[0].amount
        ),
        ("R1", "ZE", eur("60.00"))
    );

    // A return.
    h.erp
        .edit("1001", |o| o.credit_notes.push(credit("G1", "R1", "20.00")));
    h.drain().await;
    let p = h.psp.payment("s-pay-1").unwrap();
    let pos = p.position().unwrap();
    assert_eq!(pos.refunded, eur("20.00"));
    let b = h.erp.bookings("1001");
    assert_eq!(b.len(), 2);
    assert_eq!(
        (
            b[1].document.as_str(),
            b[1].event_code.as_str(),
            b[1].amount
        ),
        ("G1", "RE", eur("-20.00"))
    );
    assert_eq!(
        h.psp.money_calls("s-pay-1"),
        3,
        "capture, close, refund: once each"
    );
    assert!(
        h.ops("1001")
            .await
            .iter()
            .all(|o| o.status == OpStatus::Done)
    );
    assert!(
        h.notes.sent().is_empty(),
        "no problems: {:?}",
        h.notes.sent()
    );

    // Nothing more happens on further polls.
    h.erp.edit("1001", |_| {});
    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-1"), 3);
    assert_eq!(h.erp.bookings("1001").len(), 2);
}

#[tokio::test]
async fn lifecycle_standard_mode_capture_before_release_then_book_and_refund() {
    let mut h = harness("standard", "off");
    h.psp.put(card_authorized("s-pay-2", "100.00"));
    h.erp.upsert(order(
        "1002",
        "s-pay-2",
        &[("L1", "70.00"), ("L2", "30.00")],
    ));
    h.drain().await;

    let pos = h.psp.payment("s-pay-2").unwrap().position().unwrap();
    assert_eq!(
        pos.charged,
        eur("100.00"),
        "captured in full before release"
    );
    assert_eq!(h.erp.order("1002").unwrap().status, OrderStatus::Open);
    // The release came after the capture.
    let writes = h.erp.writes();
    assert!(writes.iter().any(|(_, _, w)| *w == ErpWrite::Release));
    let ops = h.ops("1002").await;
    let cap = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureOrder)
        .unwrap();
    let rel = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::Release)
        .unwrap();
    assert!(cap.updated_at <= rel.created_at);

    h.erp.edit("1002", |o| {
        o.lines[0].status = LineStatus::Shipped;
        o.lines[1].status = LineStatus::Cancelled;
        o.invoices.push(invoice("R1", "70.00"));
        o.status = OrderStatus::Closed;
    });
    h.drain().await;
    let pos = h.psp.payment("s-pay-2").unwrap().position().unwrap();
    assert_eq!(
        pos.refunded,
        eur("30.00"),
        "cancelled line refunded once CLOSED"
    );
    let b = h.erp.bookings("1002");
    assert_eq!(b.len(), 1, "invoice booked, no PSP call for it: {b:?}");
    assert_eq!(
        (b[0].event_code.as_str(), b[0].amount),
        ("ZE", eur("70.00"))
    );

    h.erp
        .edit("1002", |o| o.credit_notes.push(credit("G1", "R1", "70.00")));
    h.drain().await;
    let pos = h.psp.payment("s-pay-2").unwrap().position().unwrap();
    assert_eq!(pos.refunded, eur("100.00"));
    assert_eq!(
        h.psp.money_calls("s-pay-2"),
        3,
        "capture, line refund, credit refund"
    );
    assert_eq!(h.erp.bookings("1002")[1].amount, eur("-70.00"));
}

#[tokio::test]
async fn crash_after_psp_call_before_result_recorded_is_reconciled_not_resent() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-3", "50.00"));
    let mut o = order("1003", "s-pay-3", &[("L1", "50.00")]);
    o.status = OrderStatus::Open;
    o.lines[0].status = LineStatus::Shipped;
    o.invoices.push(invoice("R1", "50.00"));
    // The PSP processes the capture but the reply is lost (timeout / process died).
    h.psp.inject_next(
        PspOutcome::Unknown {
            message: "timeout".into(),
        },
        true,
    );
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    let ops = h.ops("1003").await;
    let cap = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Retry);
    assert_eq!(
        cap.inflight,
        Some(Step::Psp),
        "unknown outcome is remembered"
    );
    assert_eq!(h.psp.money_calls("s-pay-3"), 1);

    h.now += Duration::minutes(5);
    h.drain().await;
    assert_eq!(
        h.psp.money_calls("s-pay-3"),
        1,
        "the retry asked the PSP and did not capture again"
    );
    let p = h.psp.payment("s-pay-3").unwrap();
    assert_eq!(p.position().unwrap().charged, eur("50.00"));
    assert_eq!(h.erp.bookings("1003").len(), 1);
    let ops = h.ops("1003").await;
    let cap = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Done);
    assert_eq!(cap.psp_tx.as_deref(), Some(p.transactions[1].id.as_str()));
    let hist = Repo::new(h.app.store.as_ref())
        .history(&h.key("1003"), h.now)
        .await
        .unwrap();
    assert!(
        hist.iter().any(|e| e.what.contains("reconciliation")),
        "{hist:?}"
    );
}

#[tokio::test]
async fn unknown_outcome_not_processed_is_sent_again_exactly_once() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1004", "s-pay-4", "50.00");
    h.psp.inject_next(
        PspOutcome::Unknown {
            message: "connection reset".into(),
        },
        false,
    );
    h.erp.upsert(o);
    h.drain().await;
    let p = h.psp.payment("s-pay-4").unwrap();
    let charges: Vec<_> = p
        .transactions
        .iter()
        .filter(|t| t.kind == TxKind::Charge)
        .collect();
    assert_eq!(charges.len(), 1, "exactly one charge at the PSP");
    assert_eq!(charges[0].amount, eur("50.00"));
    assert_eq!(h.erp.bookings("1004").len(), 1);
}

/// The PSP was still processing a timed-out capture when paybridge looked for it: not found by
/// its reference yet. It is not sent again until `psp_settle` after the send (the hazard
/// `faults --hazards` showed: a late-applied call re-sent became a second movement); it is found
/// then, and nothing moves twice.
#[tokio::test]
async fn unknown_outcome_applied_late_by_the_psp_is_found_not_sent_again() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1014", "s-pay-14", "50.00");
    h.psp.inject_next(
        PspOutcome::Unknown {
            message: "timeout".into(),
        },
        false,
    );
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    let sent_at = h.now;
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    // (`money_calls` counts the calls the PSP applied: none so far.)
    assert_eq!(h.psp.money_calls("s-pay-14"), 0);

    // The reconciliations inside the window find nothing and send nothing.
    for _ in 0..5 {
        h.now += Duration::minutes(1);
        while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    }
    assert_eq!(
        h.psp.money_calls("s-pay-14"),
        0,
        "not re-sent inside the window"
    );
    let cap = h
        .ops("1014")
        .await
        .into_iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Retry);
    assert_eq!(
        cap.next_attempt_at,
        Some(sent_at + h.app.settings.psp_settle),
        "waits for the window's end"
    );

    // The PSP applies the call late (it carries our reference).
    let mut p = h.psp.payment("s-pay-14").unwrap();
    p.transactions.push(PspTransaction {
        at: None,
        id: "s-chg-late".into(),
        kind: TxKind::Charge,
        status: TxStatus::Success,
        amount: eur("50.00"),
        reference: Some(ledger::psp_reference(&cap.id)),
    });
    h.psp.put(p);
    h.now = sent_at + h.app.settings.psp_settle;
    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-14"), 0, "found, never sent again");
    let p = h.psp.payment("s-pay-14").unwrap();
    assert_eq!(p.position().unwrap().charged, eur("50.00"));
    let cap = h
        .ops("1014")
        .await
        .into_iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Done);
    assert_eq!(cap.psp_tx.as_deref(), Some("s-chg-late"));
    assert_eq!(h.erp.bookings("1014").len(), 1);
}

#[tokio::test]
async fn lost_erp_reply_is_read_back_not_written_twice() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1005", "s-pay-5", "80.00");
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    // The booking call (first ERP write after the capture) is applied but its reply is lost.
    h.erp.lose_next_reply();
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    h.now += Duration::minutes(5);
    h.drain().await;
    assert_eq!(h.erp.bookings("1005").len(), 1, "booked once");
    assert_eq!(h.psp.money_calls("s-pay-5"), 1);
}

/// An unreadable ERP reply to a write (a proxy's HTML error page) is an unknown outcome, not a
/// refusal: the next attempt reads back and writes only if the first did not land.
#[tokio::test]
async fn unreadable_erp_reply_is_read_back_and_retried_not_flagged() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-15", "80.00"));
    h.erp.upsert(order("1015", "s-pay-15", &[("L1", "80.00")]));
    h.erp
        .fail_next_apply(ErpError::BadReply("<html>502 Bad Gateway</html>".into()));
    h.drain().await;
    let o = h.erp.order("1015").unwrap();
    assert_eq!(o.status, OrderStatus::Open, "released after the retry");
    let releases = h
        .erp
        .writes()
        .into_iter()
        .filter(|(_, _, w)| *w == ErpWrite::Release)
        .count();
    assert_eq!(releases, 1, "written once");
    assert!(h.notes.sent().is_empty(), "nobody is bothered");
    assert!(
        h.ops("1015")
            .await
            .iter()
            .all(|o| o.status == OpStatus::Done)
    );
}

#[tokio::test]
async fn duplicate_job_delivery_has_one_effect() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1006", "s-pay-6", "10.00");
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    let ops = h.ops("1006").await;
    let job = Job::RunOp {
        order_pk: h.key("1006").pk(),
        op_id: ops[0].id.clone(),
    };
    // The same job three times (SQS at-least-once), plus the queued original.
    for _ in 0..3 {
        h.app.run_job(&job, h.now).await.unwrap();
    }
    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-6"), 1);
    assert_eq!(h.erp.bookings("1006").len(), 1);
}

#[tokio::test]
async fn quiet_hours_hold_erp_calls_and_work_runs_after() {
    let mut h = harness("expert", "00:00-04:00");
    h.psp.put(card_authorized("s-pay-7", "20.00"));
    h.erp.upsert(order("1007", "s-pay-7", &[("L1", "20.00")]));
    // 01:30 in Berlin (UTC+1 in November).
    h.now = DateTime::parse_from_rfc3339("2026-11-23T00:30:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let calls = h.erp.calls();
    let r = h.app.poll_cycle(h.now).await.unwrap();
    assert_eq!(r.held_quiet_hours, 1);
    assert_eq!(h.erp.calls(), calls, "no ERP request during quiet hours");
    assert_eq!(
        h.app.quiet_until(h.now),
        Some(
            DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
        )
    );

    // Work planned before the window (here: planned at 23:59 Berlin) waits too.
    h.now = DateTime::parse_from_rfc3339("2026-11-22T22:59:00Z")
        .unwrap()
        .with_timezone(&Utc);
    h.app.poll_cycle(h.now).await.unwrap();
    h.now = DateTime::parse_from_rfc3339("2026-11-23T00:30:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let calls = h.erp.calls();
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    assert_eq!(h.erp.calls(), calls, "release held back");
    assert_eq!(h.erp.order("1007").unwrap().status, OrderStatus::Hold);
    // Polls during the window neither call the ERP nor pile up copies of the waiting job.
    let depth = h.app.queue.depth().await.unwrap();
    assert_eq!(depth, 1, "the release waits as one job");
    for _ in 0..14 {
        // up to 03:50 Berlin
        h.now += Duration::minutes(10);
        h.app.poll_cycle(h.now).await.unwrap();
    }
    assert_eq!(h.erp.calls(), calls);
    assert_eq!(
        h.app.queue.depth().await.unwrap(),
        depth,
        "no duplicates swept in"
    );

    // After 04:00 Berlin it runs.
    h.now = DateTime::parse_from_rfc3339("2026-11-23T03:01:00Z")
        .unwrap()
        .with_timezone(&Utc);
    h.drain().await;
    assert_eq!(
        h.erp.order("1007").unwrap().status,
        OrderStatus::Open,
        "delayed, not dropped"
    );
}

fn prepayment(pid: &str, amount: &str) -> PspPayment {
    PspPayment {
        payment_id: pid.into(),
        state: PaymentState::Pending,
        method: PaymentMethod::Prepayment,
        currency: Currency::EUR,
        transactions: vec![PspTransaction {
            at: None,
            id: "s-chg-1".into(),
            kind: TxKind::Charge,
            status: TxStatus::Pending,
            amount: eur(amount),
            reference: None,
        }],
        bank_details: Some(BankDetails {
            holder: "Merchant GmbH".into(),
            iban: "DE89370400440532013000".into(),
            bic: "COBADEFFXXX".into(),
            descriptor: "4711.0815.1234".into(),
        }),
        totals_only: false,
    }
}

fn hook(pid: &str) -> Vec<u8> {
    hook_for("payment.completed", pid)
}

fn hook_for(event: &str, pid: &str) -> Vec<u8> {
    serde_json::json!({
        "event": event,
        "publicKey": "s-pub-test",
        "paymentId": pid,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn prepayment_lock_then_webhook_clears_it() {
    let mut h = harness("expert", "off");
    h.psp.put(prepayment("s-pay-8", "45.00"));
    h.erp.upsert(order("1008", "s-pay-8", &[("L1", "45.00")]));
    h.drain().await;
    let o = h.erp.order("1008").unwrap();
    assert_eq!(o.status, OrderStatus::Open);
    assert!(o.shipping_lock, "locked until the money arrives");
    assert_eq!(
        h.erp.transfer_details("1008").unwrap().descriptor,
        "4711.0815.1234"
    );

    h.psp.receive_transfer("s-pay-8", eur("45.00"));
    let ack = h
        .app
        .accept_webhook("memory", &hook("s-pay-8"), h.now)
        .await
        .unwrap();
    assert!(!ack.duplicate);
    let again = h
        .app
        .accept_webhook("memory", &hook("s-pay-8"), h.now)
        .await
        .unwrap();
    assert!(again.duplicate, "the same event twice is stored once");
    h.drain().await;
    assert!(
        !h.erp.order("1008").unwrap().shipping_lock,
        "lock cleared by the payment event"
    );
    assert!(
        h.erp.bookings("1008").is_empty(),
        "no booking before CLOSED"
    );

    h.erp.edit("1008", |o| {
        o.lines[0].status = LineStatus::Shipped;
        o.invoices.push(invoice("R1", "45.00"));
        o.status = OrderStatus::Closed;
    });
    h.drain().await;
    let b = h.erp.bookings("1008");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].event_code.as_str(), b[0].amount),
        ("ZE", eur("45.00"))
    );
    assert_eq!(h.psp.money_calls("s-pay-8"), 0);
}

#[tokio::test]
async fn prepayment_event_before_import_is_applied_on_import() {
    let mut h = harness("expert", "off");
    h.psp.put(prepayment("s-pay-9", "45.00"));
    h.psp.receive_transfer("s-pay-9", eur("45.00"));
    h.app
        .accept_webhook("memory", &hook("s-pay-9"), h.now)
        .await
        .unwrap();
    h.drain().await;
    let pending = h.pending_events().await;
    assert_eq!(pending.len(), 1, "kept until the order appears");

    h.erp.upsert(order("1009", "s-pay-9", &[("L1", "45.00")]));
    h.drain().await;
    let o = h.erp.order("1009").unwrap();
    assert_eq!(o.status, OrderStatus::Open);
    assert!(
        !o.shipping_lock,
        "paid before import: released without a lock"
    );
    let pending = h.pending_events().await;
    assert!(pending.is_empty(), "applied on import");
}

#[tokio::test]
async fn webhook_with_unknown_key_or_bad_body_changes_nothing() {
    let h = harness("expert", "off");
    let bad_key = serde_json::json!({"event":"payment.completed","publicKey":"s-pub-other","paymentId":"s-pay-1"});
    assert_eq!(
        h.app
            .accept_webhook("memory", bad_key.to_string().as_bytes(), h.now)
            .await,
        Err(WebhookError::UnknownAccount("public key"))
    );
    assert!(matches!(
        h.app.accept_webhook("memory", b"{not json", h.now).await,
        Err(WebhookError::Malformed(_))
    ));
    let huge = vec![b' '; MAX_WEBHOOK_BYTES + 1];
    assert!(matches!(
        h.app.accept_webhook("memory", &huge, h.now).await,
        Err(WebhookError::TooLarge(_))
    ));
    let bad_id = serde_json::json!({"event":"payment.completed","publicKey":"s-pub-test","paymentId":"../../etc"});
    assert!(matches!(
        h.app
            .accept_webhook("memory", bad_id.to_string().as_bytes(), h.now)
            .await,
        Err(WebhookError::Malformed(_))
    ));
    assert_eq!(h.app.queue.depth().await.unwrap(), 0);
    let stored = h.pending_events().await;
    assert!(stored.is_empty());
}

#[tokio::test]
async fn failed_authorization_check_releases_with_lock_comments_and_notifies_once() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-10", "99.00"));
    h.erp.upsert(order("1010", "s-pay-10", &[("L1", "100.00")]));
    h.drain().await;
    let o = h.erp.order("1010").unwrap();
    assert_eq!(o.status, OrderStatus::Open);
    assert!(o.shipping_lock);
    assert!(
        h.erp
            .comments("1010")
            .iter()
            .any(|c| c.contains("ERROR") && c.contains("amount mismatch"))
    );
    let sent = h.notes.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].order_id, "1010");
    assert_eq!(h.psp.money_calls("s-pay-10"), 0);
    let problems = h.app.problem_orders(h.now).await.unwrap();
    assert_eq!(problems.len(), 1);

    // Re-polls do not notify again; "problem solved" clears the mark and does nothing else.
    h.erp.edit("1010", |_| {});
    h.drain().await;
    assert_eq!(h.notes.sent().len(), 1);
    let writes = h.erp.writes().len();
    assert!(h.app.mark_solved(&h.key("1010"), h.now).await.unwrap());
    assert!(h.app.problem_orders(h.now).await.unwrap().is_empty());
    assert_eq!(h.erp.writes().len(), writes);
}

#[tokio::test]
async fn declined_capture_is_flagged_never_retried_into_a_double() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1011", "s-pay-11", "30.00");
    h.psp.inject_next(
        PspOutcome::Declined {
            code: "API.330.000.004".into(),
            message: "charge not allowed".into(),
        },
        false,
    );
    h.erp.upsert(o);
    h.drain().await;
    let ops = h.ops("1011").await;
    let cap = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Failed);
    assert!(
        h.notes
            .sent()
            .iter()
            .any(|p| p.code.starts_with("op_failed"))
    );
    assert!(h.erp.bookings("1011").is_empty());
    assert_eq!(
        h.psp
            .payment("s-pay-11")
            .unwrap()
            .position()
            .unwrap()
            .charged,
        eur("0.00")
    );
}

/// A capture planned while the authorization held but sent only after it expired (the PSP was
/// unavailable in between) is not sent: the worker checks the age again before the call.
#[tokio::test]
async fn capture_delayed_past_the_authorization_expiry_is_not_sent() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1012", "s-pay-12", "30.00");
    let mut p = h.psp.payment("s-pay-12").unwrap();
    // card: 7 days; this one expires five minutes after t0
    p.transactions[0].at = Some(t0() - Duration::days(7) + Duration::minutes(5));
    h.psp.put(p);
    h.psp.inject_next(
        PspOutcome::Retryable {
            message: "503 from the PSP".into(),
        },
        false,
    );
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    let cap = |ops: &[Operation]| {
        ops.iter()
            .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
            .cloned()
            .expect("the capture was planned in time")
    };
    assert_eq!(cap(&h.ops("1012").await).status, OpStatus::Retry);
    let calls_before = h.psp.money_calls("s-pay-12");
    h.now += Duration::minutes(10);
    h.drain().await;
    let op = cap(&h.ops("1012").await);
    assert_eq!(op.status, OpStatus::Failed);
    let why = op.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("not sent: the authorization of 2026-11-16 expired on 2026-11-23"),
        "{why}"
    );
    assert_eq!(
        h.psp.money_calls("s-pay-12"),
        calls_before,
        "nothing sent late"
    );
    let payment = h.psp.payment("s-pay-12").unwrap();
    assert_eq!(payment.position().unwrap().charged, eur("0.00"));
    let rec = Repo::new(h.app.store.as_ref())
        .order(&h.key("1012"), h.now)
        .await
        .unwrap()
        .unwrap();
    let codes: Vec<&str> = rec.open_errors().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"authorization_expired"), "{codes:?}");
    assert!(h.erp.bookings("1012").is_empty(), "R1 not marked captured");
}

/// Faults harness, seed 2026 (lifecycles 89, 222, …): the process died after saving a
/// hands-off switch and before its cancelling and evaluation. The operator's repeat finds the
/// order "already" switched and must still finish the switch; the saved switch also asks the
/// sweep for an evaluation at once.
#[tokio::test]
async fn repeated_hands_off_switch_finishes_what_a_dead_process_left() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1013", "s-pay-13", "30.00");
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap(); // the capture is planned, no worker ran
    let key = h.key("1013");
    let store = Arc::clone(&h.app.store);
    let repo = Repo::new(store.as_ref());
    // what the dead process saved: the switch only
    let mut rec = repo.order(&key, h.now).await.unwrap().unwrap();
    rec.hands_off_since = Some(h.now);
    repo.save_order(&rec, h.now).await.unwrap();
    let capture = |ops: &[Operation]| {
        ops.iter()
            .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
            .map(|o| o.status)
    };
    assert_eq!(capture(&h.ops("1013").await), Some(OpStatus::Planned));
    let changed = h.app.set_hands_off(&key, true, h.now).await.unwrap();
    assert!(!changed, "already out of automation");
    let ops = h.ops("1013").await;
    assert_eq!(capture(&ops), Some(OpStatus::Cancelled));
    assert!(
        ops.iter()
            .any(|o| o.plan.purpose == ledger::Purpose::HandsOff),
        "the switch's comment is planned"
    );
    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-13"), 0);
    // a switch saved by set_hands_off is due for the sweep at once
    h.now += Duration::minutes(1);
    assert!(h.app.set_hands_off(&key, false, h.now).await.unwrap());
    let rec = repo.order(&key, h.now).await.unwrap().unwrap();
    assert!(rec.hands_off_since.is_none());
    h.drain().await;
    assert_eq!(capture(&h.ops("1013").await), Some(OpStatus::Done));
    assert_eq!(h.psp.money_calls("s-pay-13"), 1, "captured once, back on");
}

/// Faults harness, seed 42 (lifecycles 1099, 2748): an order that already has an open error is
/// in the problem index, not the recheck index; its authorization's expiry must still be seen
/// without any change in the ERP.
#[tokio::test]
async fn order_with_an_open_error_is_rechecked_when_its_authorization_expires() {
    let mut h = harness("expert", "off");
    let mut p = card_authorized("s-pay-14", "30.00");
    // expires an hour after t0
    p.transactions[0].at = Some(t0() - Duration::days(7) + Duration::hours(1));
    h.psp.put(p);
    let mut o = order("1014", "s-pay-14", &[("L1", "20.00"), ("L2", "10.00")]);
    o.status = OrderStatus::Open;
    o.invoices.push(invoice("R1", "45.00")); // more than authorized: capture_exceeds
    h.erp.upsert(o);
    h.drain().await;
    let repo_codes = |h: &H| {
        let store = Arc::clone(&h.app.store);
        let (key, now) = (h.key("1014"), h.now);
        async move {
            let rec = Repo::new(store.as_ref())
                .order(&key, now)
                .await
                .unwrap()
                .unwrap();
            rec.open_errors()
                .map(|f| f.code.split(':').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        }
    };
    let codes = repo_codes(&h).await;
    assert_eq!(codes, ["capture_exceeds"], "expiring: a hint, one error");
    h.now = t0() + Duration::hours(2);
    h.drain().await;
    let codes = repo_codes(&h).await;
    assert!(
        codes.contains(&"authorization_expired".to_string()),
        "{codes:?}"
    );
    assert_eq!(h.psp.money_calls("s-pay-14"), 0);
}

/// Bug A of the fault simulation (`seed_1_30`): the PSP cannot be read when the poll sees the
/// order; with an ERP that lists changed orders only, no poll brings it back. The evaluation is
/// re-run from the queue once the PSP answers again.
#[tokio::test]
async fn psp_read_failure_during_evaluation_evaluates_again_from_the_queue() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-20", "40.00"));
    h.erp.upsert(order("1020", "s-pay-20", &[("L1", "40.00")]));
    h.psp.set_fetch_down(true);
    h.app.poll_cycle(h.now).await.unwrap();
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    assert_eq!(h.erp.order("1020").unwrap().status, OrderStatus::Hold);
    assert!(
        h.app.queue.depth().await.unwrap() > 0,
        "a re-evaluation is queued"
    );

    h.psp.set_fetch_down(false);
    h.now += h.app.settings.psp_recheck + Duration::seconds(1);
    // No poll: only the queued evaluation can release the order.
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    assert_eq!(h.erp.order("1020").unwrap().status, OrderStatus::Open);
    assert_eq!(h.app.queue.depth().await.unwrap(), 0);
}

/// Bug B of the fault simulation (`seed_42_459`): an operation was saved Failed, and the process
/// died before the follow-up evaluation that flags it. The redelivered job finds the operation
/// terminal and evaluates again: the failure is flagged and e-mailed.
#[tokio::test]
async fn redelivered_job_of_a_terminal_operation_runs_the_lost_follow_up() {
    let h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1021", "s-pay-21", "30.00");
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    let key = h.key("1021");
    let mut op = h
        .ops("1021")
        .await
        .into_iter()
        .next()
        .expect("a capture is planned");
    // What the dead worker managed to do: the operation saved Failed, nothing after it.
    op.fail("declined: charge not allowed".into(), h.now);
    Repo::new(h.app.store.as_ref())
        .save_op(&mut op)
        .await
        .unwrap();
    assert!(h.notes.sent().is_empty());

    let job = Job::RunOp {
        order_pk: key.pk(),
        op_id: op.id.clone(),
    };
    assert_eq!(h.app.run_job(&job, h.now).await.unwrap(), JobOutcome::Done);
    let sent = h.notes.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].code.starts_with("op_failed"), "{sent:?}");
    // A second duplicate changes nothing and tells nobody again.
    h.app.run_job(&job, h.now).await.unwrap();
    assert_eq!(h.notes.sent().len(), 1);
}

/// Bug D of the fault simulation (`seed_1_0`): the error flag is saved, the e-mail is not sent
/// (the mail server is down, or the process dies in between). The next evaluation sends it.
#[tokio::test]
async fn an_error_not_yet_told_is_e_mailed_at_the_next_evaluation() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-22", "99.00"));
    h.erp.upsert(order("1022", "s-pay-22", &[("L1", "100.00")]));
    h.notes.set_down(true);
    h.drain().await;
    let rec = Repo::new(h.app.store.as_ref())
        .order(&h.key("1022"), h.now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.open_errors().count(), 1, "flagged");
    assert!(rec.notified.is_empty());
    assert!(h.notes.sent().is_empty());

    h.notes.set_down(false);
    h.app.evaluate(&h.key("1022"), None, h.now).await.unwrap();
    let sent = h.notes.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].code, "authorization_check");
    h.app.evaluate(&h.key("1022"), None, h.now).await.unwrap();
    assert_eq!(h.notes.sent().len(), 1, "told once");
}

/// Finding F of the fault simulation (`seed_42_82099`): the attempts ran out while the last
/// capture's outcome was unknown, and the PSP had applied it. Giving up there told the operator
/// "failed" about money that moved, and nothing booked it. Now the operation reconciles first:
/// it finds the capture, records it and books it.
#[tokio::test]
async fn attempts_used_up_with_a_psp_call_in_flight_reconcile_before_giving_up() {
    let mut h = harness("expert", "off");
    h.app.settings.max_attempts = 1;
    let o = invoiced_card_order(&h, "1023", "s-pay-23", "50.00");
    h.psp.inject_next(
        PspOutcome::Unknown {
            message: "timeout".into(),
        },
        true,
    );
    h.erp.upsert(o);
    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-23"), 1, "sent once, applied");
    let ops = h.ops("1023").await;
    let cap = ops
        .iter()
        .find(|o| o.plan.purpose == ledger::Purpose::CaptureInvoice)
        .unwrap();
    assert_eq!(cap.status, OpStatus::Done, "{cap:?}");
    assert_eq!(h.erp.bookings("1023").len(), 1, "the capture is booked");
    assert!(h.notes.sent().is_empty(), "{:?}", h.notes.sent());
}

/// The other side of finding F: the attempts ran out and the PSP never got the call. The
/// operation waits out the PSP's settle time (it might still appear), then gives up without
/// sending again, with nothing in flight, and the operator is told.
#[tokio::test]
async fn attempts_used_up_gives_up_only_once_the_psp_says_nothing_moved() {
    let mut h = harness("expert", "off");
    h.app.settings.max_attempts = 1;
    let o = invoiced_card_order(&h, "1024", "s-pay-24", "50.00");
    h.psp.inject_next(
        PspOutcome::Unknown {
            message: "timeout".into(),
        },
        false,
    );
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    let sent_at = h.now;
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    h.now += Duration::minutes(2);
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    let cap = h.ops("1024").await.into_iter().next().unwrap();
    assert_eq!(
        cap.status,
        OpStatus::Retry,
        "inside the settle time: {cap:?}"
    );
    assert_eq!(
        cap.next_attempt_at,
        Some(sent_at + h.app.settings.psp_settle)
    );

    h.drain().await;
    assert_eq!(h.psp.money_calls("s-pay-24"), 0, "never sent again");
    let cap = h.ops("1024").await.into_iter().next().unwrap();
    assert_eq!(cap.status, OpStatus::Failed);
    assert_eq!(cap.inflight, None, "known not to have moved money");
    assert!(
        cap.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("gave up after"),
        "{cap:?}"
    );
    let sent = h.notes.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

fn partly_hook(pid: &str) -> Vec<u8> {
    hook_for("payment.partly", pid)
}

/// Finding G of the fault simulation (`seed_42_940`): a PSP sends the same body for every
/// `payment.partly` of a payment. The second one was acknowledged as a duplicate and nothing
/// looked at the payment again. Now a repeat of an event already applied re-arms it: one more
/// evaluation, which sees the rest of the money and clears the lock.
#[tokio::test]
async fn a_second_identical_webhook_after_more_money_arrived_is_evaluated() {
    let mut h = harness("expert", "off");
    h.psp.put(prepayment("s-pay-25", "45.00"));
    h.erp.upsert(order("1025", "s-pay-25", &[("L1", "45.00")]));
    h.drain().await;
    assert!(h.erp.order("1025").unwrap().shipping_lock);

    h.psp.receive_transfer("s-pay-25", eur("20.00"));
    let first = h
        .app
        .accept_webhook("memory", &partly_hook("s-pay-25"), h.now)
        .await;
    assert!(!first.unwrap().duplicate);
    h.drain().await;
    assert!(h.erp.order("1025").unwrap().shipping_lock, "20 of 45 paid");

    h.psp.receive_transfer("s-pay-25", eur("25.00"));
    let second = h
        .app
        .accept_webhook("memory", &partly_hook("s-pay-25"), h.now)
        .await;
    assert!(second.unwrap().duplicate, "the same body: stored once");
    assert_eq!(h.app.queue.depth().await.unwrap(), 1, "queued once more");
    // Replays while that is pending coalesce into it.
    for _ in 0..5 {
        h.app
            .accept_webhook("memory", &partly_hook("s-pay-25"), h.now)
            .await
            .unwrap();
    }
    assert_eq!(h.app.queue.depth().await.unwrap(), 1, "coalesced");
    h.drain().await;
    assert!(
        !h.erp.order("1025").unwrap().shipping_lock,
        "lock cleared once all 45.00 arrived"
    );
    let pending = h.pending_events().await;
    assert!(pending.is_empty(), "{pending:?}");
}

/// An event that arrives again while an evaluation is between reading it and marking it applied
/// (its PSP view may predate the new money) is not marked: the mark is conditional on the
/// version read, and the repeat changed it.
#[tokio::test]
async fn an_event_repeated_after_it_was_read_is_not_marked_applied_by_that_reader() {
    let h = harness("expert", "off");
    h.app
        .accept_webhook("memory", &partly_hook("s-pay-26"), h.now)
        .await
        .unwrap();
    let repo = Repo::new(h.app.store.as_ref());
    let read = repo.unapplied_events("acme", 10, h.now).await.unwrap();
    assert_eq!(read.len(), 1);
    let again = h
        .app
        .accept_webhook("memory", &partly_hook("s-pay-26"), h.now)
        .await
        .unwrap();
    assert!(again.duplicate);
    let err = repo.mark_event_applied(&read[0], h.now).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(
        repo.unapplied_events("acme", 10, h.now)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Finding H of the fault simulation (`seed_42_83398`): an operation finished, the process died
/// before the follow-up evaluation, and its job was dead-lettered, so nothing ran the follow-up
/// (there: the release after the capture). A finished operation stays in the sweep's index until
/// its follow-up ran; the sweep runs it.
#[tokio::test]
async fn a_follow_up_lost_with_its_job_is_run_by_the_sweep() {
    let mut h = harness("expert", "off");
    let o = invoiced_card_order(&h, "1027", "s-pay-27", "30.00");
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    // The job is lost (dead-lettered after the worker died on it).
    for d in h
        .app
        .queue
        .receive(
            10,
            std::time::Duration::from_secs(30),
            h.now.timestamp_millis(),
        )
        .await
        .unwrap()
    {
        h.app.queue.ack(&d.receipt).await.unwrap();
    }
    let mut op = h.ops("1027").await.into_iter().next().unwrap();
    // What the dead worker managed to do: the operation saved Failed, nothing after it.
    op.fail("declined: charge not allowed".into(), h.now);
    Repo::new(h.app.store.as_ref())
        .save_op(&mut op)
        .await
        .unwrap();
    assert!(op.follow_up);

    h.now += h.app.settings.sweep_grace + Duration::seconds(1);
    let report = h.app.poll_cycle(h.now).await.unwrap();
    assert_eq!(report.swept_ops, 1);
    while h.app.work_once(10, h.now).await.unwrap() > 0 {}
    let sent = h.notes.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].code.starts_with("op_failed"), "{sent:?}");
    let op = h.ops("1027").await.into_iter().next().unwrap();
    assert!(!op.follow_up, "followed up");

    h.now += h.app.settings.sweep_grace + Duration::seconds(1);
    let report = h.app.poll_cycle(h.now).await.unwrap();
    assert_eq!(report.swept_ops, 0, "not swept again");
    assert_eq!(h.notes.sent().len(), 1);
}

/// A store that refuses to save an operation's end (as if the process died right before it),
/// while `refuse` is set; everything else passes through.
struct EndRefusingStore {
    inner: SqliteStore,
    refuse: std::sync::atomic::AtomicBool,
}

impl EndRefusingStore {
    fn refused<'a>(&self, mut items: impl Iterator<Item = &'a Item>) -> Result<(), StoreError> {
        let ending = |i: &Item| i.sk.starts_with("OP#") && i.body["status"] == "done";
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) && items.any(ending) {
            return Err(StoreError::Backend("died before the end was saved".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for EndRefusingStore {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError> {
        self.inner.get(pk, sk, now).await
    }
    async fn insert(&self, item: &Item, now: i64) -> Result<bool, StoreError> {
        self.inner.insert(item, now).await
    }
    async fn update(&self, item: &Item) -> Result<u64, StoreError> {
        self.refused(std::iter::once(item))?;
        self.inner.update(item).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str, now: i64) -> Result<Vec<Item>, StoreError> {
        self.inner.query(pk, sk_prefix, now).await
    }
    async fn query_index(
        &self,
        gsi_pk: &str,
        gsi_sk_max: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Item>, StoreError> {
        self.inner.query_index(gsi_pk, gsi_sk_max, limit, now).await
    }
    async fn delete(&self, pk: &str, sk: &str, version: u64) -> Result<(), StoreError> {
        self.inner.delete(pk, sk, version).await
    }
    async fn commit(&self, writes: &[Write], now: i64) -> Result<Vec<u64>, StoreError> {
        self.refused(writes.iter().filter_map(|w| match w {
            Write::Insert(i) | Write::Update(i) => Some(i),
            Write::Delete { .. } => None,
        }))?;
        self.inner.commit(writes, now).await
    }
}

/// One in-flight mark covers an operation's run of writes that can be read back (the invoice
/// marked captured, then its comment): when the process dies after both were applied and before
/// the end is saved, the stored mark is the first write's, and the next attempt reads both back
/// and sends neither again.
#[tokio::test]
async fn writes_sent_under_one_mark_are_read_back_together_after_a_crash() {
    let mut h = harness("expert", "off");
    let store = Arc::new(EndRefusingStore {
        inner: SqliteStore::open_in_memory().unwrap(),
        refuse: true.into(),
    });
    h.app.store = store.clone();
    h.erp
        .upsert(invoiced_card_order(&h, "1031", "s-pay-31", "45.00"));
    h.app.poll_cycle(h.now).await.unwrap();
    for _ in 0..5 {
        h.app.work_once(10, h.now).await.unwrap();
    }
    // The capture ran: its PSP call and both ERP writes happened, its end was not saved.
    let capture = h
        .ops("1031")
        .await
        .into_iter()
        .find(|o| o.plan.psp.is_some())
        .expect("a capture is planned");
    let applied = |h: &H| {
        h.erp
            .writes()
            .into_iter()
            .filter(|(_, op, _)| *op == capture.id)
            .map(|(_, _, w)| w)
            .collect::<Vec<_>>()
    };
    assert_eq!(capture.plan.erp.len(), 2, "{:?}", capture.plan.erp);
    assert_eq!(applied(&h), capture.plan.erp, "both writes were applied");
    assert_eq!(capture.status, OpStatus::Running);
    assert_eq!(capture.erp_done, 0, "no write's result was saved");
    assert_eq!(
        capture.inflight,
        Some(Step::Erp { index: 0 }),
        "one mark for both"
    );

    store
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    h.now += Duration::minutes(30); // the lease runs out
    h.drain().await;
    let done = h.ops("1031").await;
    assert!(done.iter().all(|o| o.status == OpStatus::Done), "{done:?}");
    assert_eq!(
        applied(&h),
        capture.plan.erp,
        "neither write was sent again"
    );
    assert_eq!(h.psp.money_calls("s-pay-31"), 1);
}

/// An evaluation that plans more operations than one store transaction holds (60 invoices
/// captured at once: 120 writes with their history lines) saves them in parts, and each is
/// captured once.
#[tokio::test]
async fn more_plans_than_one_commit_holds_are_saved_in_parts() {
    let mut h = harness("expert", "off");
    h.psp.put(card_authorized("s-pay-60", "60.00"));
    let lines: Vec<(String, &str)> = (1..=60).map(|i| (format!("L{i}"), "1.00")).collect();
    let lines: Vec<(&str, &str)> = lines.iter().map(|(l, a)| (l.as_str(), *a)).collect();
    let mut o = order("1060", "s-pay-60", &lines);
    o.status = OrderStatus::Open;
    o.invoices = (1..=60)
        .map(|i| invoice(&format!("R{i}"), "1.00"))
        .collect();
    h.erp.upsert(o);
    h.app.poll_cycle(h.now).await.unwrap();
    let planned = h.ops("1060").await;
    assert_eq!(
        planned.len(),
        60,
        "one capture per invoice, planned in one evaluation"
    );
    h.drain().await;
    let ops = h.ops("1060").await;
    assert!(ops.iter().all(|o| o.status == OpStatus::Done), "{ops:?}");
    assert_eq!(
        h.psp.money_calls("s-pay-60"),
        60,
        "each invoice captured once"
    );
    let o = h.erp.order("1060").unwrap();
    assert!(o.invoices.iter().all(|i| i.captured));
}

/// Issue 11, webhook floods: the account identifier is public, so a flood of verified-looking
/// webhooks naming payments paybridge does not know is bounded by the tenant's budget
/// (429 past it), costs no PSP read, and does not stop events of known payments.
#[tokio::test]
async fn a_flood_for_unknown_payments_is_bounded_and_known_payments_still_get_through() {
    let mut h = harness("expert", "off");
    let mut config = (*h.app.config).clone();
    config.tenant.unverified_events_per_hour = 25;
    h.app.config = Arc::new(config);
    h.psp.put(prepayment("s-pay-70", "45.00"));
    h.erp.upsert(order("1070", "s-pay-70", &[("L1", "45.00")]));
    h.drain().await;
    let fetches_before = h.psp.fetches();
    let refused_before = super::over_budget_count();

    let (mut accepted, mut refused) = (0, 0);
    for i in 0..200 {
        match h
            .app
            .accept_webhook("memory", &hook(&format!("s-pay-forged-{i}")), h.now)
            .await
        {
            Ok(_) => accepted += 1,
            Err(WebhookError::OverBudget(secs)) => {
                assert!((1..=3600).contains(&secs), "retry after {secs} s");
                refused += 1;
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!((accepted, refused), (25, 175));
    assert!(super::over_budget_count() >= refused_before + 175);
    let stored = Repo::new(h.app.store.as_ref())
        .unapplied_events("acme", 1000, h.now)
        .await
        .unwrap();
    assert_eq!(stored.len(), 25, "only the budget is stored");
    assert!(stored.iter().all(|e| e.unverified));

    // A webhook for the known payment is taken during the flood and applied.
    h.psp.receive_transfer("s-pay-70", eur("45.00"));
    let ack = h
        .app
        .accept_webhook("memory", &hook("s-pay-70"), h.now)
        .await
        .unwrap();
    assert!(!ack.duplicate);
    h.drain().await;
    assert!(!h.erp.order("1070").unwrap().shipping_lock, "lock cleared");
    // The forged events made no PSP read: only the known payment was read again.
    assert!(
        h.psp.fetches() - fetches_before <= 2,
        "PSP reads during the flood: {}",
        h.psp.fetches() - fetches_before
    );

    // The next window has a fresh budget.
    h.now += Duration::hours(1);
    h.app
        .accept_webhook("memory", &hook("s-pay-forged-new"), h.now)
        .await
        .unwrap();
}

/// Unverified events expire after a day (the order's import reads the PSP anyway), and the
/// sweep looks at one that stays unapplied less and less often instead of at every poll.
#[tokio::test]
async fn unverified_events_back_off_in_the_sweep_and_expire_after_a_day() {
    let mut h = harness("expert", "off");
    h.app
        .accept_webhook("memory", &hook("s-pay-nobody"), h.now)
        .await
        .unwrap();
    let ev = &h.pending_events().await[0];
    assert!(ev.unverified);
    let item = h
        .app
        .store
        .get(&ev.pk(), &ev.sk(), h.now.timestamp())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        item.expires_at,
        Some(h.now.timestamp() + crate::store::repo::UNVERIFIED_EVENT_TTL_HOURS * 3600)
    );

    // Polls every minute for 23 hours: the sweep looks at the event at growing gaps.
    let start = h.now;
    let mut looks = Vec::new();
    let mut last_sweeps = 0;
    while h.now < start + Duration::hours(23) {
        h.now += Duration::minutes(1);
        h.app.poll_cycle(h.now).await.unwrap();
        let ev = &h.pending_events().await[0];
        if ev.sweeps != last_sweeps {
            looks.push((h.now - start).num_minutes());
            last_sweeps = ev.sweeps;
        }
    }
    assert!(
        (8..=14).contains(&looks.len()),
        "looked at {} times in 23 h: {looks:?}",
        looks.len()
    );
    assert_eq!(looks[0], 2, "first look after the sweep grace");
    for w in looks.windows(3) {
        assert!(w[2] - w[1] >= w[1] - w[0], "gaps grow: {looks:?}");
    }
    assert_eq!(h.psp.fetches(), 0, "no PSP read for an unknown payment");

    h.now = start + Duration::hours(24);
    assert!(h.pending_events().await.is_empty(), "expired after a day");
}

/// An event of a known order whose job was lost is found by the sweep once the grace has
/// passed, and applied.
#[tokio::test]
async fn an_event_whose_job_was_lost_is_swept_after_the_grace() {
    let mut h = harness("expert", "off");
    h.psp.put(prepayment("s-pay-71", "45.00"));
    h.erp.upsert(order("1071", "s-pay-71", &[("L1", "45.00")]));
    h.drain().await;
    h.psp.receive_transfer("s-pay-71", eur("45.00"));
    h.app
        .accept_webhook("memory", &hook("s-pay-71"), h.now)
        .await
        .unwrap();
    // The job is lost (a crash before the worker took it).
    let lost = h
        .app
        .queue
        .receive(
            10,
            std::time::Duration::from_secs(60),
            h.now.timestamp_millis(),
        )
        .await
        .unwrap();
    assert_eq!(lost.len(), 1);
    h.app.queue.ack(&lost[0].receipt).await.unwrap();
    h.app.poll_cycle(h.now).await.unwrap();
    assert_eq!(
        h.app.queue.depth().await.unwrap(),
        0,
        "not swept inside the grace"
    );
    h.now += h.app.settings.sweep_grace + Duration::seconds(1);
    h.drain().await;
    assert!(
        !h.erp.order("1071").unwrap().shipping_lock,
        "applied by the sweep"
    );
    assert!(h.pending_events().await.is_empty());
}

/// A flood naming one known payment under ever new event names stores one event and reads the
/// payment about once per second of the clock, not once per webhook.
#[tokio::test]
async fn a_flood_naming_one_known_payment_coalesces_into_one_event() {
    let mut h = harness("expert", "off");
    h.psp.put(prepayment("s-pay-72", "45.00"));
    h.erp.upsert(order("1072", "s-pay-72", &[("L1", "45.00")]));
    h.drain().await;
    let before = h.psp.fetches();
    for i in 0..200 {
        h.app
            .accept_webhook(
                "memory",
                &hook_for(&format!("payment.x{i}"), "s-pay-72"),
                h.now,
            )
            .await
            .unwrap();
        while h.app.work_once(10, h.now).await.unwrap() > 0 {}
        if i % 50 == 49 {
            h.now += Duration::seconds(1);
        }
    }
    let events = Repo::new(h.app.store.as_ref())
        .payment_events("acme", "s-pay-72", h.now)
        .await
        .unwrap();
    assert!(
        events.len() <= 1,
        "one stored event at most: {}",
        events.len()
    );
    let reads = h.psp.fetches() - before;
    assert!(
        (1..=5).contains(&reads),
        "PSP reads for 200 webhooks in 4 s: {reads}"
    );
    // The last one is still applied: the payment is read once more and the lock cleared.
    h.psp.receive_transfer("s-pay-72", eur("45.00"));
    h.app
        .accept_webhook("memory", &hook("s-pay-72"), h.now)
        .await
        .unwrap();
    h.drain().await;
    assert!(!h.erp.order("1072").unwrap().shipping_lock);
}

/// An order naming a payment the PSP does not know is read again with doubling waits (at most
/// 6 h apart), not once a minute forever.
#[tokio::test]
async fn an_unreadable_payment_is_read_again_with_doubling_waits() {
    let mut h = harness("expert", "off");
    h.erp
        .upsert(order("1080", "s-pay-nowhere", &[("L1", "45.00")]));
    let start = h.now;
    let mut reads_at = Vec::new();
    while h.now < start + Duration::hours(24) {
        let before = h.psp.fetches();
        h.app.poll_cycle(h.now).await.unwrap();
        while h.app.work_once(10, h.now).await.unwrap() > 0 {}
        if h.psp.fetches() > before {
            reads_at.push((h.now - start).num_minutes());
        }
        h.now += Duration::minutes(1);
    }
    assert!(
        (8..=20).contains(&reads_at.len()),
        "PSP reads in 24 h: {} at minutes {reads_at:?}",
        reads_at.len()
    );
    let gaps: Vec<i64> = reads_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "waits grow: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= 6 * 60 + 1),
        "at most 6 h apart: {gaps:?}"
    );
    let rec = Repo::new(h.app.store.as_ref())
        .order(&h.key("1080"), h.now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.psp_unreadable_since, Some(start));

    // Once the payment can be read, the mark is gone.
    h.psp.put(prepayment("s-pay-nowhere", "45.00"));
    h.now += Duration::hours(6);
    h.drain().await;
    let rec = Repo::new(h.app.store.as_ref())
        .order(&h.key("1080"), h.now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.psp_unreadable_since, None);
}
