//! The Computop Paygate connector ([`PaygatePsp`]) against the Paygate simulator over loopback
//! HTTP: the inquire mapping of reserved, booked, pending and failed payments (totals, state,
//! family, the shop's `TransID` as the initial transaction); capture, credit and reverse with
//! amounts in minor units, `ReqId` = our reference, the payment's `TransID` and a MAC the
//! simulator verifies; every row of the outcome table in the connector's module doc, driven by
//! the simulator's faults; reconciliation after an unknown outcome (`find_transaction`: totals
//! first, then a same-`ReqId` replay where no room is left) and a lagging inquire; and no
//! password in any log line.
//!
//! Every test asserts the simulator's state (its steps and amounts) beside the connector's
//! answer: what Paygate did, not only what paybridge believes.
//!
//! Not covered here because the simulator has no such fault: HTTP 429 (the crafted host of
//! `paygate_hostile.rs` answers it).
//!
//! Two findings of this suite are pinned: a capture Paygate holds pending is reported pending
//! by `find_transaction` (its last step is open; a re-send under the same ReqId would run again),
//! and a reversal does not show in the simulator's inquire (it reads `LastStatus` as the
//! reversal's `OK`; the connector maps a `LastStatus` naming a reversal, neither reading being
//! documented).

use paybridge_core::config::{
    AccountExtra, Cipher, MethodConfig, Mode, PspAccount, PspKind, Secret, SecretRef,
};
use paybridge_core::ledger::{PspCall, RefundReason, psp_reference};
use paybridge_core::model::{
    MethodFamily, PaymentMethod, PaymentState, PspPayment, PspTransaction, TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::psp::paygate::envelope;
use paybridge_core::psp::paygate::{Account, PaygatePsp, PaygateTimeouts};
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use paybridge_testkit::paygate_sim::{
    DECLINED, Endpoint, Fault, PaygateSim, PaymentKind, SimCall, SimPaymentView, StepKind,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const MID: &str = "pbWireShop01";
const BLOWFISH: &str = "wireBlowfish-7Qx";
const HMAC: &str = "wire-hmac-Zk42-password";

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

/// A Paygate method config of `MID` (`psp_method` = card, klarna, paypal, …). The secrets are
/// references the connector never resolves: it holds its own [`Account`].
fn method_config(sim: &PaygateSim, mid: &str, psp_method: &str) -> MethodConfig {
    MethodConfig {
        erp: "main".into(),
        mandant: "01".into(),
        erp_method: format!("PG-{psp_method}"),
        psp: PspKind::Paygate,
        active: true,
        mode: Mode::Expert,
        invoice_event: "ZE".into(),
        return_event: "RE".into(),
        rounding_tolerance: 0,
        authorization_validity_days: Some(28),
        pending_error_after_hours: 24,
        account: PspAccount {
            public_key: mid.into(),
            private_key: SecretRef::Env("PAYGATE_UNUSED_IN_WIRE_TESTS".into()),
            api_host: Some(sim.base_url()),
            extra: AccountExtra {
                mac_key: Some(SecretRef::Env("PAYGATE_UNUSED_IN_WIRE_TESTS".into())),
                cipher: Cipher::Blowfish,
                psp_method: Some(psp_method.into()),
            },
        },
    }
}

fn account(mid: &str, blowfish: &str, hmac: &str, base: &str) -> Account {
    Account::new(
        mid,
        Cipher::Blowfish,
        Secret::new(blowfish),
        Secret::new(hmac),
        Some(base),
    )
    .expect("a valid account")
}

fn connector(accounts: Vec<Account>, request: Duration) -> PaygatePsp {
    PaygatePsp::new(
        accounts,
        PaygateTimeouts {
            connect: Duration::from_secs(2),
            request,
        },
    )
    .expect("the client builds")
}

struct Env {
    sim: PaygateSim,
    psp: PaygatePsp,
    card: MethodConfig,
    paypal: MethodConfig,
}

async fn env() -> Env {
    env_with_timeout(Duration::from_secs(5)).await
}

async fn env_with_timeout(request: Duration) -> Env {
    logs();
    let sim = PaygateSim::start().await;
    sim.add_merchant(MID, BLOWFISH, HMAC);
    let psp = connector(vec![account(MID, BLOWFISH, HMAC, &sim.base_url())], request);
    Env {
        card: method_config(&sim, MID, "card"),
        paypal: method_config(&sim, MID, "paypal"),
        psp,
        sim,
    }
}

impl Env {
    fn reserved(&self, trans_id: &str, minor: i64) -> String {
        self.sim
            .create_payment(MID, trans_id, minor, "EUR", PaymentKind::Reserved)
    }

    fn booked(&self, trans_id: &str, minor: i64) -> String {
        self.sim
            .create_payment(MID, trans_id, minor, "EUR", PaymentKind::Booked)
    }

    async fn fetch(&self, cfg: &MethodConfig, pay_id: &str) -> PspPayment {
        self.psp.fetch(cfg, pay_id).await.expect("inquire")
    }

    /// Inquires, then sends `call` under the reference of operation `op`.
    async fn exec(&self, cfg: &MethodConfig, pay_id: &str, call: &PspCall, op: &str) -> PspOutcome {
        let p = self.fetch(cfg, pay_id).await;
        self.psp.execute(cfg, &p, call, &psp_reference(op)).await
    }

    fn view(&self, pay_id: &str) -> SimPaymentView {
        self.sim
            .payment(pay_id)
            .expect("the payment at the simulator")
    }

    /// The simulator's steps of a payment: (kind, status, amount, ReqId).
    fn steps(&self, pay_id: &str) -> Vec<(StepKind, String, i64, Option<String>)> {
        self.view(pay_id)
            .steps
            .into_iter()
            .map(|s| (s.kind, s.status, s.amount, s.req_id))
            .collect()
    }

    /// (AmountAuth, AmountCap, AmountCred, reversed) at the simulator.
    fn amounts(&self, pay_id: &str) -> (i64, i64, i64, bool) {
        let v = self.view(pay_id);
        (v.amount_auth, v.amount_cap, v.amount_cred, v.reversed)
    }

    fn last_call(&self, ep: Endpoint) -> SimCall {
        self.sim
            .calls_to(ep)
            .pop()
            .unwrap_or_else(|| panic!("no request to {ep:?}"))
    }

    fn xid_of_step(&self, pay_id: &str, index: usize) -> String {
        self.view(pay_id).steps[index].xid.clone()
    }
}

fn done(o: &PspOutcome) -> &str {
    match o {
        PspOutcome::Done { tx_id } => tx_id,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn declined(o: &PspOutcome) -> (&str, &str) {
    match o {
        PspOutcome::Declined { code, message } => (code, message),
        other => panic!("expected Declined, got {other:?}"),
    }
}

fn unknown(o: &PspOutcome) -> &str {
    match o {
        PspOutcome::Unknown { message } => message,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

fn capture(minor: i64) -> PspCall {
    PspCall::Capture { amount: eur(minor) }
}

fn credit(minor: i64) -> PspCall {
    PspCall::Refund {
        amount: eur(minor),
        reason: RefundReason::Return,
    }
}

fn reverse(minor: i64) -> PspCall {
    PspCall::Reverse { amount: eur(minor) }
}

fn tx(id: &str, kind: TxKind, status: TxStatus, amount: Money) -> PspTransaction {
    PspTransaction {
        id: id.into(),
        kind,
        status,
        amount,
        reference: None,
        at: None,
    }
}

/// The request MAC the simulator must have seen: `PayID*TransID*MerchantID*Amount*Currency`.
fn request_mac(pay_id: &str, trans_id: &str, amount: &str, currency: &str) -> String {
    envelope::mac(
        HMAC.as_bytes(),
        &envelope::request_mac_message(pay_id, trans_id, MID, amount, currency),
    )
}

/// The decrypted fields of a money request, in order, without the MAC; and the MAC.
fn sent_fields(call: &SimCall) -> (Vec<(String, String)>, String) {
    let mac = call.field("MAC").expect("a MAC").to_string();
    let fields = call
        .fields
        .iter()
        .filter(|(k, _)| k != "MAC")
        .cloned()
        .collect();
    (fields, mac)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ------------------------------------------------------------------------------ inquire

#[tokio::test]
async fn paygate_fetch_maps_reserved_booked_pending_and_failed_payments() {
    let e = env().await;
    let klarna = method_config(&e.sim, MID, "klarna");
    let reserved = e.reserved("shop-1001", 10_000);
    let booked = e.booked("shop-1002", 5_000);
    let pending = e
        .sim
        .create_payment(MID, "shop-1003", 7_000, "EUR", PaymentKind::Pending);
    let failed = e
        .sim
        .create_payment(MID, "shop-1004", 3_000, "EUR", PaymentKind::Failed);

    // Reserved card: an authorization of AmountAuth under the shop's TransID, nothing captured.
    let p = e.fetch(&e.card, &reserved).await;
    assert_eq!(p.payment_id, reserved);
    assert_eq!(
        (p.state, p.method, p.family(), p.currency, p.totals_only),
        (
            PaymentState::Pending,
            PaymentMethod::Card,
            MethodFamily::AuthorizeCapture,
            Currency::EUR,
            true
        )
    );
    assert_eq!(
        p.transactions,
        vec![tx(
            "shop-1001",
            TxKind::Authorize,
            TxStatus::Success,
            eur(10_000)
        )]
    );
    let pos = p.position().expect("position");
    assert_eq!(
        (pos.remaining().unwrap(), pos.refundable().unwrap()),
        (eur(10_000), eur(0))
    );
    // Klarna is read as the authorize-then-capture family.
    let k = e.fetch(&klarna, &reserved).await;
    assert_eq!(
        (k.method, k.family(), k.transactions.clone()),
        (
            PaymentMethod::Card,
            MethodFamily::AuthorizeCapture,
            p.transactions.clone()
        )
    );

    // Booked PayPal: the initial transaction is a charge of AmountCap; charged in the shop.
    let p = e.fetch(&e.paypal, &booked).await;
    assert_eq!(
        (p.state, p.method, p.family()),
        (
            PaymentState::Completed,
            PaymentMethod::Paypal,
            MethodFamily::ChargedInShop
        )
    );
    assert_eq!(
        p.transactions,
        vec![tx(
            "shop-1002",
            TxKind::Charge,
            TxStatus::Success,
            eur(5_000)
        )]
    );
    assert_eq!(p.position().unwrap().refundable().unwrap(), eur(5_000));
    // The same booked payment through a card config (Capture=AUTO): authorization + charge.
    let p = e.fetch(&e.card, &booked).await;
    assert_eq!(
        (p.state, p.family()),
        (PaymentState::Completed, MethodFamily::AuthorizeCapture)
    );
    assert_eq!(
        p.transactions,
        vec![
            tx(
                "shop-1002",
                TxKind::Authorize,
                TxStatus::Success,
                eur(5_000)
            ),
            tx(
                &format!("{booked}-captured"),
                TxKind::Charge,
                TxStatus::Success,
                eur(5_000)
            ),
        ]
    );

    // Pending: nothing authorized yet, the initial transaction pending.
    let p = e.fetch(&e.card, &pending).await;
    assert_eq!(p.state, PaymentState::Pending);
    assert_eq!(
        p.transactions,
        vec![tx(
            "shop-1003",
            TxKind::Authorize,
            TxStatus::Pending,
            eur(0)
        )]
    );
    // Settled, the same read shows the authorization.
    assert!(e.sim.settle(&pending, None, true));
    let p = e.fetch(&e.card, &pending).await;
    assert_eq!(
        p.transactions,
        vec![tx(
            "shop-1003",
            TxKind::Authorize,
            TxStatus::Success,
            eur(7_000)
        )]
    );

    // Failed: canceled, the initial transaction an error of nothing.
    let p = e.fetch(&e.card, &failed).await;
    assert_eq!(p.state, PaymentState::Canceled);
    assert_eq!(
        p.transactions,
        vec![tx("shop-1004", TxKind::Authorize, TxStatus::Error, eur(0))]
    );
    assert_eq!(e.view(&failed).last_status, "FAILED");

    // What went over the wire: MerchantID, PayID and the MAC of `PayID*TransID*MerchantID**`
    // (no TransID on inquire), never a money field.
    let inquiries = e.sim.calls_to(Endpoint::Inquire);
    assert_eq!(inquiries.len(), 7);
    for c in &inquiries {
        assert_eq!(
            (c.method.as_str(), c.merchant_id.as_deref(), c.http_status),
            ("POST", Some(MID), 200)
        );
        let pay_id = c.field("PayID").expect("PayID");
        assert_eq!(
            c.fields,
            pairs(&[
                ("MerchantID", MID),
                ("PayID", pay_id),
                ("MAC", &request_mac(pay_id, "", "", "")),
            ])
        );
        assert_eq!(
            (c.status.as_deref(), c.code.as_deref()),
            (Some("OK"), Some("00000000"))
        );
    }
    // Reads move nothing.
    assert_eq!(e.amounts(&reserved), (10_000, 0, 0, false));
    assert_eq!(e.amounts(&booked), (5_000, 5_000, 0, false));
}

#[tokio::test]
async fn paygate_fetch_in_jpy_and_kwd_reads_minor_units_of_the_currency() {
    let e = env().await;
    let jpy = e
        .sim
        .create_payment(MID, "shop-jpy", 1_500, "JPY", PaymentKind::Reserved);
    let kwd = e
        .sim
        .create_payment(MID, "shop-kwd", 12_345, "KWD", PaymentKind::Booked);
    let p = e.fetch(&e.card, &jpy).await;
    assert_eq!(p.currency, Currency::JPY);
    assert_eq!(
        p.transactions[0].amount,
        Money::from_minor(1_500, Currency::JPY)
    );
    assert_eq!(p.transactions[0].amount.to_string(), "1500 JPY");
    let p = e.fetch(&e.paypal, &kwd).await;
    assert_eq!(p.currency, Currency::KWD);
    assert_eq!(
        p.transactions[0].amount,
        Money::from_minor(12_345, Currency::KWD)
    );
    // A JPY capture sends the yen as they are, a KWD credit its fils.
    let o = e
        .exec(
            &e.card,
            &jpy,
            &PspCall::Capture {
                amount: Money::from_minor(1_000, Currency::JPY),
            },
            "jpy-cap",
        )
        .await;
    assert_eq!(done(&o), e.xid_of_step(&jpy, 1));
    let c = e.last_call(Endpoint::Capture);
    assert_eq!(
        (c.field("Amount"), c.field("Currency")),
        (Some("1000"), Some("JPY"))
    );
    let o = e
        .exec(
            &e.paypal,
            &kwd,
            &PspCall::Refund {
                amount: Money::from_minor(2_005, Currency::KWD),
                reason: RefundReason::Credit,
            },
            "kwd-credit",
        )
        .await;
    assert_eq!(done(&o), e.xid_of_step(&kwd, 2));
    let c = e.last_call(Endpoint::Credit);
    assert_eq!(
        (c.field("Amount"), c.field("Currency")),
        (Some("2005"), Some("KWD"))
    );
    assert_eq!(e.amounts(&jpy), (1_500, 1_000, 0, false));
    assert_eq!(e.amounts(&kwd), (12_345, 12_345, 2_005, false));
}

#[tokio::test]
async fn paygate_fetch_of_unknown_foreign_or_malformed_pay_ids_is_not_found() {
    let e = env().await;
    e.sim
        .add_merchant("pbOtherShop", "otherBlowfish", "other-hmac");
    let theirs = e
        .sim
        .create_payment("pbOtherShop", "their-1", 900, "EUR", PaymentKind::Reserved);
    // Another merchant's PayID: Paygate does not know it under our MerchantID.
    match e.psp.fetch(&e.card, &theirs).await {
        Err(PspError::NotFound(m)) => assert!(m.contains("20160004"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // A well-formed PayID nobody has.
    match e
        .psp
        .fetch(&e.card, "0123456789abcdef0123456789abcdef")
        .await
    {
        Err(PspError::NotFound(m)) => assert!(m.contains("PayID unknown"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(e.sim.calls_to(Endpoint::Inquire).len(), 2);
    // Not a PayID at all: refused before anything is sent.
    for bad in [
        "",
        "../inquire.aspx",
        "abc&MerchantID=pbOtherShop",
        "abc=1",
        "ünïcode",
        "0123456789abcdef0123456789abcdef0",
    ] {
        assert!(
            matches!(e.psp.fetch(&e.card, bad).await, Err(PspError::NotFound(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        e.sim.calls_to(Endpoint::Inquire).len(),
        2,
        "no request for a malformed PayID"
    );
    // The other merchant's payment is untouched.
    assert_eq!(e.amounts(&theirs), (900, 0, 0, false));
    assert_eq!(e.sim.calls().len(), 2);
}

#[tokio::test]
async fn paygate_inquire_lag_shows_the_payment_before_its_latest_step() {
    let e = env().await;
    let pid = e.reserved("shop-lag", 10_000);
    let o = e.exec(&e.card, &pid, &capture(4_000), "lag-cap").await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 1));
    e.sim.set_inquire_lag(1);
    let lagging = e.fetch(&e.card, &pid).await;
    assert_eq!(
        lagging.position().unwrap().charged,
        eur(0),
        "one lagging read"
    );
    assert_eq!(lagging.state, PaymentState::Pending);
    let fresh = e.fetch(&e.card, &pid).await;
    assert_eq!(fresh.position().unwrap().charged, eur(4_000));
    assert_eq!(fresh.state, PaymentState::Partly);
    assert_eq!(e.amounts(&pid), (10_000, 4_000, 0, false));
}

// ------------------------------------------------------------------------------ capture

#[tokio::test]
async fn paygate_capture_partial_then_rest_in_minor_units_under_our_reqid_and_transid() {
    let e = env().await;
    let pid = e.reserved("shop-2001", 10_000);
    let r1 = psp_reference("cap-1");
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &capture(2_550), &r1).await;
    let xid1 = e.xid_of_step(&pid, 1);
    assert_eq!(done(&o), xid1);
    assert_eq!(r1.len(), 26, "ReqId within Paygate's 32");

    let c = e.last_call(Endpoint::Capture);
    let (fields, mac) = sent_fields(&c);
    assert_eq!(
        fields,
        pairs(&[
            ("MerchantID", MID),
            ("PayID", &pid),
            ("TransID", "shop-2001"),
            ("Amount", "2550"),
            ("Currency", "EUR"),
            ("ReqId", &r1),
        ])
    );
    assert_eq!(mac, request_mac(&pid, "shop-2001", "2550", "EUR"));
    assert_eq!(
        (
            c.merchant_id.as_deref(),
            c.http_status,
            c.status.as_deref(),
            c.code.as_deref(),
            c.replayed
        ),
        (Some(MID), 200, Some("OK"), Some("00000000"), false)
    );
    assert_eq!(
        e.steps(&pid)[1],
        (StepKind::Capture, "OK".into(), 2_550, Some(r1.clone()))
    );
    assert_eq!(e.amounts(&pid), (10_000, 2_550, 0, false));

    // The rest, from a fresh read.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.state, PaymentState::Partly);
    assert_eq!(p.position().unwrap().remaining().unwrap(), eur(7_450));
    let r2 = psp_reference("cap-2");
    let o = e.psp.execute(&e.card, &p, &capture(7_450), &r2).await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 2));
    assert_ne!(e.xid_of_step(&pid, 2), xid1);
    let c = e.last_call(Endpoint::Capture);
    assert_eq!(
        (c.field("Amount"), c.field("ReqId"), c.field("TransID")),
        (Some("7450"), Some(r2.as_str()), Some("shop-2001"))
    );
    assert_eq!(
        c.field("MAC"),
        Some(request_mac(&pid, "shop-2001", "7450", "EUR").as_str())
    );
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.state, PaymentState::Completed);
    assert_eq!(
        p.transactions,
        vec![
            tx(
                "shop-2001",
                TxKind::Authorize,
                TxStatus::Success,
                eur(10_000)
            ),
            tx(
                &format!("{pid}-captured"),
                TxKind::Charge,
                TxStatus::Success,
                eur(10_000)
            ),
        ]
    );
    // Beyond the authorization: refused by Paygate, a FAILED step, nothing captured.
    let r3 = psp_reference("cap-3");
    let o = e.psp.execute(&e.card, &p, &capture(1), &r3).await;
    let (code, message) = declined(&o);
    assert_eq!(code, "20120006");
    assert!(
        message.contains("exceeds the open authorization 0"),
        "{message}"
    );
    assert_eq!(
        e.steps(&pid)[3],
        (StepKind::Capture, "FAILED".into(), 1, Some(r3))
    );
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 3);
}

#[tokio::test]
async fn paygate_capture_of_nothing_or_unsendable_values_is_declined_without_a_request() {
    let e = env().await;
    let pid = e.reserved("shop-2101", 10_000);
    let p = e.fetch(&e.card, &pid).await;
    for (call, code) in [
        (capture(0), "PAYBRIDGE.AMOUNT"),
        (capture(-100), "PAYBRIDGE.AMOUNT"),
        (credit(0), "PAYBRIDGE.AMOUNT"),
    ] {
        let o = e.psp.execute(&e.card, &p, &call, "pbref").await;
        assert_eq!(declined(&o).0, code, "{call:?}");
    }
    // A reference Paygate cannot carry (`&`/`=` would smuggle fields into the plaintext).
    let o = e
        .psp
        .execute(&e.card, &p, &capture(100), "ref&Amount=1")
        .await;
    assert_eq!(declined(&o).0, "PAYBRIDGE.REQUEST");
    // Shipment is no Paygate call.
    let o = e
        .psp
        .execute(
            &e.card,
            &p,
            &PspCall::Shipment {
                invoice_id: "INV-1".into(),
            },
            "pbref",
        )
        .await;
    assert_eq!(declined(&o).0, "PAYBRIDGE.UNSUPPORTED");
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 0);
    assert_eq!(e.sim.calls_to(Endpoint::Credit).len(), 0);
    assert_eq!(e.steps(&pid).len(), 1);
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
}

// ------------------------------------------------------------------------------ credit

#[tokio::test]
async fn paygate_credit_within_the_captured_amount_and_beyond_it() {
    let e = env().await;
    let pid = e.booked("shop-3001", 5_000);
    let r1 = psp_reference("credit-1");
    let p = e.fetch(&e.paypal, &pid).await;
    let o = e.psp.execute(&e.paypal, &p, &credit(2_000), &r1).await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 2));
    let c = e.last_call(Endpoint::Credit);
    let (fields, mac) = sent_fields(&c);
    assert_eq!(
        fields,
        pairs(&[
            ("MerchantID", MID),
            ("PayID", &pid),
            ("TransID", "shop-3001"),
            ("Amount", "2000"),
            ("Currency", "EUR"),
            ("ReqId", &r1),
        ])
    );
    assert_eq!(mac, request_mac(&pid, "shop-3001", "2000", "EUR"));
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 2_000, false));

    // 3001 of the 3000 left: Paygate refuses, nothing moves.
    let p = e.fetch(&e.paypal, &pid).await;
    assert_eq!(p.position().unwrap().refundable().unwrap(), eur(3_000));
    let r2 = psp_reference("credit-2");
    let o = e.psp.execute(&e.paypal, &p, &credit(3_001), &r2).await;
    let (code, message) = declined(&o);
    assert_eq!(code, "20120006");
    assert!(
        message.contains("amount 3001 exceeds the creditable amount 3000"),
        "{message}"
    );
    assert_eq!(
        e.steps(&pid)[3],
        (StepKind::Credit, "FAILED".into(), 3_001, Some(r2))
    );
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 2_000, false));
    assert_eq!(e.view(&pid).last_status, "FAILED");

    // LastStatus FAILED does not hide the earlier money: the totals decide.
    let p = e.fetch(&e.paypal, &pid).await;
    assert_eq!(
        p.transactions,
        vec![
            tx("shop-3001", TxKind::Charge, TxStatus::Success, eur(5_000)),
            tx(
                &format!("{pid}-credited"),
                TxKind::CancelCharge,
                TxStatus::Success,
                eur(2_000)
            ),
        ]
    );
    // The exact rest is credited.
    let o = e.psp.execute(&e.paypal, &p, &credit(3_000), "pbrest").await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 4));
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 5_000, false));
    // Nothing captured on a reserved payment: nothing to credit.
    let reserved = e.reserved("shop-3002", 4_000);
    let o = e
        .exec(&e.card, &reserved, &credit(100), "credit-nothing")
        .await;
    assert_eq!(declined(&o).0, "20120006");
    assert_eq!(e.amounts(&reserved), (4_000, 0, 0, false));
    assert_eq!(e.sim.calls_to(Endpoint::Credit).len(), 4);
}

// ------------------------------------------------------------------------------ reverse

#[tokio::test]
async fn paygate_reverse_of_an_untouched_authorization_is_sent() {
    let e = env().await;
    let pid = e.reserved("shop-4001", 10_000);
    let auth_xid = e.xid_of_step(&pid, 0);
    let r = psp_reference("reverse-1");
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &reverse(10_000), &r).await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 1));
    let c = e.last_call(Endpoint::Reverse);
    let (fields, mac) = sent_fields(&c);
    assert_eq!(
        fields,
        pairs(&[
            ("MerchantID", MID),
            ("PayID", &pid),
            ("TransID", "shop-4001"),
            ("Amount", "10000"),
            ("Currency", "EUR"),
            ("ReqId", &r),
        ])
    );
    assert_eq!(mac, request_mac(&pid, "shop-4001", "10000", "EUR"));
    let step = e.view(&pid).steps[1].clone();
    assert_eq!(
        (step.kind, step.status.as_str(), step.undoes),
        (StepKind::Reversal, "OK", Some(auth_xid))
    );
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, true));
    // Nothing can be captured from it any more.
    let o = e.exec(&e.card, &pid, &capture(100), "after-reverse").await;
    assert_eq!(declined(&o).0, "20180004");
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, true));
}

#[tokio::test]
async fn paygate_reverse_after_a_partial_capture_or_of_part_is_not_sent() {
    let e = env().await;
    let pid = e.reserved("shop-4101", 10_000);
    let o = e.exec(&e.card, &pid, &capture(4_000), "partial").await;
    done(&o);
    // The rest: reverse.aspx would undo the capture, so nothing is sent.
    let r = psp_reference("reverse-rest");
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &reverse(6_000), &r).await;
    assert_eq!(done(&o), format!("unsent-{r}"));
    // Nothing to find for it either, and still nothing sent.
    let found = e
        .psp
        .find_transaction(&e.card, &p, &reverse(6_000), &r)
        .await;
    assert_eq!(found, Ok(None));
    // Part of an untouched authorization: not sent either.
    let untouched = e.reserved("shop-4102", 10_000);
    let p = e.fetch(&e.card, &untouched).await;
    let o = e.psp.execute(&e.card, &p, &reverse(3_000), "pbpart").await;
    assert_eq!(done(&o), "unsent-pbpart");
    assert!(e.sim.calls_to(Endpoint::Reverse).is_empty(), "no request");
    assert_eq!(e.amounts(&pid), (10_000, 4_000, 0, false));
    assert_eq!(
        e.steps(&pid).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![StepKind::Auth, StepKind::Capture]
    );
    assert_eq!(e.amounts(&untouched), (10_000, 0, 0, false));
    assert_eq!(e.steps(&untouched).len(), 1);
}

/// The connector reads a reversal from `LastStatus` (REVERSED, CANCELED, CANCELLED, VOIDED)
/// and says the simulator does the same; the simulator answers `LastStatus=OK` (the reversal
/// step's status) with `AmountAuth` unchanged. Neither reading is confirmed by a public source
/// (both mark it inferred), so after a reversal the connector's view shows the whole
/// authorization open. This asserts what the module doc promises.
#[tokio::test]
async fn paygate_fetch_after_a_reversal_reads_it_only_where_last_status_names_it() {
    let e = env().await;
    let pid = e.reserved("shop-4201", 10_000);
    done(&e.exec(&e.card, &pid, &reverse(10_000), "rev").await);
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, true));
    // The simulator's reading (AmountAuth unchanged, LastStatus OK): the view cannot tell;
    // the authorization still looks open (the flows rely on the ledger's done reversal).
    let p = e.fetch(&e.card, &pid).await;
    assert_ne!(p.state, PaymentState::Canceled);
    assert_eq!(p.position().unwrap().remaining().unwrap(), eur(10_000));
    // The other reading (LastStatus REVERSED) is mapped to a reversed authorization: the
    // connector's unit test `paygate_inquire_totals_become_the_payment_view` covers it.
}

// ------------------------------------------------------------------------------ outcomes

#[tokio::test]
async fn paygate_server_error_before_processing_is_unknown_and_reconciles_to_absent() {
    let e = env().await;
    let pid = e.reserved("shop-5001", 10_000);
    let call = capture(2_500);
    let r = psp_reference("op-500-before");
    e.sim
        .inject_on(Endpoint::Capture, Fault::ServerErrorBefore, 1);
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert!(unknown(&o).contains("HTTP 500"), "{o:?}");
    let c = e.last_call(Endpoint::Capture);
    assert_eq!((c.http_status, c.status.clone()), (500, None));
    assert_eq!(e.steps(&pid).len(), 1, "nothing processed");
    // Nothing of its kind at Paygate: not done.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.card, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(
        e.sim.calls_to(Endpoint::Capture).len(),
        1,
        "reconciling sent nothing"
    );
    // Sent again under the same ReqId: executed once.
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 1));
    assert!(!e.last_call(Endpoint::Capture).replayed);
    assert_eq!(
        e.steps(&pid)[1..],
        [(StepKind::Capture, "OK".into(), 2_500, Some(r))]
    );
    assert_eq!(e.amounts(&pid), (10_000, 2_500, 0, false));
}

#[tokio::test]
async fn paygate_inquire_during_an_outage_is_unavailable() {
    let e = env().await;
    let pid = e.reserved("shop-5002", 1_000);
    e.sim
        .inject_on(Endpoint::Inquire, Fault::ServerErrorBefore, 1);
    assert!(matches!(
        e.psp.fetch(&e.card, &pid).await,
        Err(PspError::Unavailable(m)) if m.contains("HTTP 500")
    ));
    e.sim.inject_on(Endpoint::Inquire, Fault::DropAfter, 1);
    assert!(matches!(
        e.psp.fetch(&e.card, &pid).await,
        Err(PspError::Unavailable(_))
    ));
    // An inquire Paygate refuses (its Code 2…): not found, with the code.
    e.sim.inject_on(
        Endpoint::Inquire,
        Fault::Decline {
            code: "22060203".into(),
            description: "inquiry refused".into(),
        },
        1,
    );
    match e.psp.fetch(&e.card, &pid).await {
        Err(PspError::NotFound(m)) => assert!(m.contains("22060203"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    e.sim.inject_on(Endpoint::Inquire, Fault::Unencrypted, 1);
    match e.psp.fetch(&e.card, &pid).await {
        Err(PspError::NotFound(m)) => assert!(m.contains("40200000"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Back to normal.
    assert_eq!(
        e.fetch(&e.card, &pid).await.transactions[0].amount,
        eur(1_000)
    );
    assert_eq!(e.sim.calls_to(Endpoint::Inquire).len(), 5);
    assert_eq!(e.amounts(&pid), (1_000, 0, 0, false));
}

#[tokio::test]
async fn paygate_server_error_after_processing_is_unknown_and_found_by_a_replay() {
    let e = env().await;
    let pid = e.reserved("shop-5101", 10_000);
    let call = capture(10_000);
    let r = psp_reference("op-500-after");
    e.sim
        .inject_on(Endpoint::Capture, Fault::ServerErrorAfter, 1);
    let o = e.exec(&e.card, &pid, &call, "op-500-after").await;
    assert!(unknown(&o).contains("HTTP 500"), "{o:?}");
    let xid = e.xid_of_step(&pid, 1);
    assert_eq!(
        e.steps(&pid)[1],
        (StepKind::Capture, "OK".into(), 10_000, Some(r.clone()))
    );
    let c = e.last_call(Endpoint::Capture);
    assert_eq!(
        (c.http_status, c.status.as_deref()),
        (500, Some("OK")),
        "processed, then 500"
    );
    // No room left for it: the same request under the same ReqId, answered with the original.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.position().unwrap().remaining().unwrap(), eur(0));
    let found = e
        .psp
        .find_transaction(&e.card, &p, &call, &r)
        .await
        .expect("reconciles")
        .expect("found");
    assert_eq!(
        found,
        PspTransaction {
            id: xid.clone(),
            kind: TxKind::Charge,
            status: TxStatus::Success,
            amount: eur(10_000),
            reference: Some(r.clone()),
            at: None,
        }
    );
    let replay = e.last_call(Endpoint::Capture);
    assert!(replay.replayed, "Paygate answered the original");
    assert_eq!(
        (replay.field("ReqId"), replay.field("Amount")),
        (Some(r.as_str()), Some("10000"))
    );
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 2);
    assert_eq!(e.steps(&pid).len(), 2, "no new money");
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
}

#[tokio::test]
async fn paygate_timeout_after_processing_is_unknown_and_a_resend_is_replayed() {
    let e = env_with_timeout(Duration::from_secs(1)).await;
    let pid = e.reserved("shop-5201", 10_000);
    let call = capture(3_000);
    let r = psp_reference("op-timeout");
    e.sim.inject_on(
        Endpoint::Capture,
        Fault::TimeoutAfter(Duration::from_secs(4)),
        1,
    );
    let started = std::time::Instant::now();
    let o = e.exec(&e.card, &pid, &call, "op-timeout").await;
    let message = unknown(&o);
    assert!(
        message.contains("may have processed it") && message.contains("capture.aspx"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "the client timed out"
    );
    let xid = e.xid_of_step(&pid, 1);
    assert_eq!(
        e.amounts(&pid),
        (10_000, 3_000, 0, false),
        "Paygate applied it"
    );
    // Room left for it: not provable from the totals, so not found.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.position().unwrap().remaining().unwrap(), eur(7_000));
    assert_eq!(
        e.psp.find_transaction(&e.card, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 1);
    // The app re-sends under the same ReqId: the original comes back, nothing captured twice.
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert_eq!(done(&o), xid);
    let resend = e.last_call(Endpoint::Capture);
    assert!(resend.replayed);
    assert_eq!(resend.field("ReqId"), Some(r.as_str()));
    assert_eq!(
        e.steps(&pid),
        vec![
            (StepKind::Auth, "AUTHORIZED".into(), 10_000, None),
            (StepKind::Capture, "OK".into(), 3_000, Some(r)),
        ],
        "no second capture step"
    );
    assert_eq!(e.amounts(&pid), (10_000, 3_000, 0, false));
}

#[tokio::test]
async fn paygate_dropped_reply_of_a_credit_is_unknown_and_found_by_a_replay() {
    let e = env().await;
    let pid = e.booked("shop-5301", 5_000);
    let call = credit(5_000);
    let r = psp_reference("op-drop");
    e.sim.inject_on(Endpoint::Credit, Fault::DropAfter, 1);
    let o = e.exec(&e.paypal, &pid, &call, "op-drop").await;
    assert!(unknown(&o).contains("credit.aspx"), "{o:?}");
    assert_eq!(e.last_call(Endpoint::Credit).http_status, 0, "cut");
    let xid = e.xid_of_step(&pid, 2);
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 5_000, false));
    let p = e.fetch(&e.paypal, &pid).await;
    assert_eq!(p.position().unwrap().refundable().unwrap(), eur(0));
    let found = e
        .psp
        .find_transaction(&e.paypal, &p, &call, &r)
        .await
        .expect("reconciles")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.kind, found.status, found.amount),
        (
            xid.as_str(),
            TxKind::CancelCharge,
            TxStatus::Success,
            eur(5_000)
        )
    );
    assert_eq!(found.reference.as_deref(), Some(r.as_str()));
    assert!(e.last_call(Endpoint::Credit).replayed);
    assert_eq!(e.steps(&pid).len(), 3, "no second credit");
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 5_000, false));
}

#[tokio::test]
async fn paygate_dropped_reply_of_a_reversal_is_unknown_and_a_resend_is_replayed() {
    let e = env().await;
    let pid = e.reserved("shop-5401", 8_000);
    let call = reverse(8_000);
    let r = psp_reference("op-drop-reverse");
    e.sim.inject_on(Endpoint::Reverse, Fault::DropAfter, 1);
    let o = e.exec(&e.card, &pid, &call, "op-drop-reverse").await;
    unknown(&o);
    let xid = e.xid_of_step(&pid, 1);
    assert_eq!(e.amounts(&pid), (8_000, 0, 0, true));
    // The totals show no reversal (see `paygate_fetch_after_a_reversal_reads_it_only_where_last_status_names_it`), so reconciling finds nothing
    // and the app sends again under the same ReqId: Paygate answers the original.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.card, &p, &call, &r).await,
        Ok(None)
    );
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert_eq!(done(&o), xid);
    assert!(e.last_call(Endpoint::Reverse).replayed);
    assert_eq!(
        e.steps(&pid).iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![StepKind::Auth, StepKind::Reversal]
    );
    assert_eq!(e.amounts(&pid), (8_000, 0, 0, true));
}

#[tokio::test]
async fn paygate_decline_is_declined_with_paygates_code_and_stays_declined_on_resend() {
    let e = env().await;
    let pid = e.reserved("shop-5501", 10_000);
    let call = capture(5_000);
    let r = psp_reference("op-decline");
    e.sim.inject_on(
        Endpoint::Capture,
        Fault::Decline {
            code: DECLINED.into(),
            description: "declined by the acquirer".into(),
        },
        1,
    );
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert_eq!(
        o,
        PspOutcome::Declined {
            code: "21000305".into(),
            message: "21000305 FAILED declined by the acquirer".into(),
        }
    );
    assert_eq!(
        e.steps(&pid)[1],
        (StepKind::Capture, "FAILED".into(), 5_000, Some(r.clone()))
    );
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
    // FAILED is final: the same ReqId gets the original refusal, nothing is executed.
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert_eq!(declined(&o).0, "21000305");
    assert!(e.last_call(Endpoint::Capture).replayed);
    assert_eq!(e.steps(&pid).len(), 2);
    // Reconciling a declined call finds nothing (no capture of its kind at Paygate).
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.card, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
}

#[tokio::test]
async fn paygate_unencrypted_error_is_declined_and_nothing_moves() {
    let e = env().await;
    let pid = e.booked("shop-5601", 5_000);
    e.sim.inject_on(Endpoint::Credit, Fault::Unencrypted, 1);
    let o = e.exec(&e.paypal, &pid, &credit(1_000), "op-plain").await;
    let (code, message) = declined(&o);
    assert_eq!(code, "40200000");
    assert!(message.contains("unencrypted"), "{message}");
    let c = e.last_call(Endpoint::Credit);
    assert_eq!((c.http_status, c.code.as_deref()), (200, Some("40200000")));
    assert_eq!(e.steps(&pid).len(), 2, "nothing processed");
    assert_eq!(e.amounts(&pid), (5_000, 5_000, 0, false));
}

#[tokio::test]
async fn paygate_pending_is_pending_until_settled() {
    let e = env().await;
    let pid = e.reserved("shop-5701", 10_000);
    e.sim.inject_on(Endpoint::Capture, Fault::Pending, 1);
    let o = e.exec(&e.card, &pid, &capture(6_000), "op-pending").await;
    let xid = e.xid_of_step(&pid, 1);
    assert_eq!(o, PspOutcome::Pending { tx_id: xid.clone() });
    assert_eq!(
        e.steps(&pid)[1].1,
        "PENDING",
        "the simulator holds it pending"
    );
    // Pending money does not show in the totals yet.
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.position().unwrap().charged, eur(0));
    // Settled: the capture shows.
    assert!(e.sim.settle(&pid, Some(&xid), true));
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(p.position().unwrap().charged, eur(6_000));
    assert_eq!(p.state, PaymentState::Partly);
    assert_eq!(e.amounts(&pid), (10_000, 6_000, 0, false));
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 1);
}

/// After a `Pending` outcome the app keeps the call in flight and reconciles: `find_transaction`
/// answering `None` ("not sent") makes it send the call again under the same ReqId after its
/// settle time. Paygate's ReqId protects only calls with a final status (reference §3.7; the
/// simulator follows it: a pending step does not consume its ReqId), and inquire totals do not
/// show pending money, so that re-send is a second capture. This asserts that a capture Paygate
/// holds pending is not reported "not sent".
#[tokio::test]
async fn paygate_a_pending_capture_is_never_reported_not_sent() {
    let e = env().await;
    let pid = e.reserved("shop-5702", 10_000);
    let call = capture(3_000);
    let r = psp_reference("op-pending-reconcile");
    e.sim.inject_on(Endpoint::Capture, Fault::Pending, 1);
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &call, &r).await;
    assert!(matches!(o, PspOutcome::Pending { .. }), "{o:?}");
    let p = e.fetch(&e.card, &pid).await;
    let found = e.psp.find_transaction(&e.card, &p, &call, &r).await;
    assert!(
        matches!(&found, Ok(Some(t)) if t.status == TxStatus::Pending),
        "a pending capture must not be reported not sent: {found:?}"
    );
    // What the re-send after `None` does today: a second capture step at Paygate.
    assert_eq!(
        e.steps(&pid)
            .iter()
            .filter(|s| s.0 == StepKind::Capture)
            .count(),
        1
    );
}

#[tokio::test]
async fn paygate_wrong_blowfish_password_is_a_credentials_decline_and_never_retried() {
    let e = env().await;
    let pid = e.reserved("shop-5801", 10_000);
    let p = e.fetch(&e.card, &pid).await;
    let wrong = connector(
        vec![account(MID, "notTheBlowfish", HMAC, &e.sim.base_url())],
        Duration::from_secs(5),
    );
    e.sim.clear_calls();
    let o = wrong
        .execute(&e.card, &p, &capture(1_000), "pbwrongkey")
        .await;
    let (code, message) = declined(&o);
    assert_eq!(code, "PAYBRIDGE.CREDENTIALS");
    assert!(message.contains("configuration error"), "{message}");
    assert!(!message.contains("notTheBlowfish"), "{message}");
    assert!(matches!(
        wrong.fetch(&e.card, &pid).await,
        Err(PspError::Auth(m)) if m.contains("Unexpected exception")
    ));
    // Two requests, neither opened (no fields), nothing moved.
    let calls = e.sim.calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(
            (c.merchant_id.as_deref(), c.fields.len(), c.http_status),
            (Some(MID), 0, 200)
        );
    }
    assert_eq!(e.steps(&pid).len(), 1);
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
}

#[tokio::test]
async fn paygate_wrong_hmac_password_is_declined_by_paygate_and_moves_nothing() {
    let e = env().await;
    let pid = e.reserved("shop-5901", 10_000);
    let p = e.fetch(&e.card, &pid).await;
    let wrong = connector(
        vec![account(
            MID,
            BLOWFISH,
            "not-the-hmac-password",
            &e.sim.base_url(),
        )],
        Duration::from_secs(5),
    );
    let o = wrong
        .execute(&e.card, &p, &capture(1_000), "pbwrongmac")
        .await;
    let (code, message) = declined(&o);
    assert_eq!(code, "20010008");
    assert!(message.contains("MAC does not match"), "{message}");
    let c = e.last_call(Endpoint::Capture);
    assert_eq!(
        (c.status.as_deref(), c.code.as_deref(), c.replayed),
        (Some("FAILED"), Some("20010008"), false)
    );
    assert_ne!(
        c.field("MAC"),
        Some(request_mac(&pid, "shop-5901", "1000", "EUR").as_str())
    );
    // The inquire is refused the same way.
    match wrong.fetch(&e.card, &pid).await {
        Err(PspError::NotFound(m)) => assert!(m.contains("20010008"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Refused before reaching the payment: no step, and the ReqId was not consumed.
    assert_eq!(e.steps(&pid).len(), 1);
    let o = e
        .psp
        .execute(&e.card, &p, &capture(1_000), "pbwrongmac")
        .await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 1));
    assert!(!e.last_call(Endpoint::Capture).replayed);
    assert_eq!(e.amounts(&pid), (10_000, 1_000, 0, false));
}

#[tokio::test]
async fn paygate_unknown_merchant_is_declined_and_an_unloaded_one_sends_nothing() {
    let e = env().await;
    let pid = e.reserved("shop-6001", 10_000);
    let p = e.fetch(&e.card, &pid).await;
    // A MerchantID Paygate does not know: its unencrypted error, declined with its code.
    let stranger_cfg = method_config(&e.sim, "pbStranger", "card");
    let stranger = connector(
        vec![account("pbStranger", BLOWFISH, HMAC, &e.sim.base_url())],
        Duration::from_secs(5),
    );
    let o = stranger
        .execute(&stranger_cfg, &p, &capture(1_000), "pbstranger")
        .await;
    let (code, message) = declined(&o);
    assert_eq!(code, "20160001");
    assert!(message.contains("MerchantID unknown"), "{message}");
    let c = e.last_call(Endpoint::Capture);
    assert_eq!(
        (c.merchant_id.as_deref(), c.fields.len()),
        (Some("pbStranger"), 0)
    );
    match stranger.fetch(&stranger_cfg, &pid).await {
        Err(PspError::NotFound(m)) => assert!(m.contains("20160001"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A config naming a MerchantID this process has no account for: nothing is sent.
    let before = e.sim.calls().len();
    let o = e
        .psp
        .execute(&stranger_cfg, &p, &capture(1_000), "pbunloaded")
        .await;
    assert_eq!(declined(&o).0, "PAYBRIDGE.CONFIG");
    assert!(matches!(
        e.psp.fetch(&stranger_cfg, &pid).await,
        Err(PspError::Auth(m)) if m.contains("pbStranger")
    ));
    assert_eq!(
        e.psp
            .find_transaction(&stranger_cfg, &p, &capture(1_000), "pbunloaded")
            .await,
        Ok(None),
        "nothing of its kind on the payment"
    );
    assert_eq!(e.sim.calls().len(), before);
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
}

#[tokio::test]
async fn paygate_connection_refused_is_retryable_and_nothing_is_sent() {
    let e = env().await;
    let pid = e.reserved("shop-6101", 10_000);
    let p = e.fetch(&e.card, &pid).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let offline = connector(
        vec![account(MID, BLOWFISH, HMAC, &base)],
        Duration::from_secs(5),
    );
    let o = offline
        .execute(&e.card, &p, &capture(1_000), "pboffline")
        .await;
    assert!(matches!(o, PspOutcome::Retryable { .. }), "{o:?}");
    assert!(matches!(
        offline.fetch(&e.card, &pid).await,
        Err(PspError::Unavailable(_))
    ));
    assert_eq!(e.sim.calls().len(), 1, "only the first inquire");
    assert_eq!(e.amounts(&pid), (10_000, 0, 0, false));
}

// ------------------------------------------------------------------------------ reconciliation

#[tokio::test]
async fn paygate_find_transaction_with_no_room_but_not_ours_is_none_and_moves_nothing() {
    let e = env().await;
    let pid = e.reserved("shop-7001", 10_000);
    let ours = capture(5_000);
    let r = psp_reference("op-ours");
    done(&e.exec(&e.card, &pid, &capture(5_000), "op-first").await);
    // Ours never reached the payment…
    e.sim
        .inject_on(Endpoint::Capture, Fault::ServerErrorBefore, 1);
    let p = e.fetch(&e.card, &pid).await;
    unknown(&e.psp.execute(&e.card, &p, &ours, &r).await);
    // …and someone else captured the rest meanwhile (the merchant's back office).
    done(
        &e.exec(&e.card, &pid, &capture(5_000), "op-backoffice")
            .await,
    );
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
    // No room for ours: the same ReqId is sent again, Paygate refuses for want of room.
    let p = e.fetch(&e.card, &pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.card, &p, &ours, &r).await,
        Ok(None)
    );
    let replay = e.last_call(Endpoint::Capture);
    assert_eq!(
        (
            replay.field("ReqId"),
            replay.code.as_deref(),
            replay.replayed
        ),
        (Some(r.as_str()), Some("20120006"), false)
    );
    assert_eq!(
        e.steps(&pid).last().cloned(),
        Some((StepKind::Capture, "FAILED".into(), 5_000, Some(r)))
    );
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false), "nothing moved");
}

#[tokio::test]
async fn paygate_find_transaction_after_a_lagging_inquire_then_resend_is_replayed() {
    let e = env().await;
    let pid = e.reserved("shop-7101", 10_000);
    let call = capture(10_000);
    let r = psp_reference("op-lag");
    e.sim
        .inject_on(Endpoint::Capture, Fault::ServerErrorAfter, 1);
    unknown(&e.exec(&e.card, &pid, &call, "op-lag").await);
    let xid = e.xid_of_step(&pid, 1);
    // The read after it lags: no capture visible, so reconciling says not found…
    e.sim.set_inquire_lag(1);
    let lagging = e.fetch(&e.card, &pid).await;
    assert_eq!(lagging.position().unwrap().charged, eur(0));
    assert_eq!(
        e.psp.find_transaction(&e.card, &lagging, &call, &r).await,
        Ok(None)
    );
    assert_eq!(e.sim.calls_to(Endpoint::Capture).len(), 1);
    // …and the app sends again under the same ReqId: the original, no second capture.
    let o = e.psp.execute(&e.card, &lagging, &call, &r).await;
    assert_eq!(done(&o), xid);
    assert!(e.last_call(Endpoint::Capture).replayed);
    assert_eq!(
        e.steps(&pid),
        vec![
            (StepKind::Auth, "AUTHORIZED".into(), 10_000, None),
            (StepKind::Capture, "OK".into(), 10_000, Some(r)),
        ]
    );
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
}

/// Paygate answers a known ReqId with the original reply whatever the resubmission says: a
/// call under an earlier reference with another amount gets the earlier amount echoed, which
/// is never taken as this call's success.
#[tokio::test]
async fn paygate_a_reqid_replayed_for_another_amount_is_unknown_not_done() {
    let e = env().await;
    let pid = e.reserved("shop-7301", 10_000);
    let r = psp_reference("op-amount");
    let p = e.fetch(&e.card, &pid).await;
    let xid = done(&e.psp.execute(&e.card, &p, &capture(3_000), &r).await).to_string();
    assert_eq!(xid, e.xid_of_step(&pid, 1));
    let p = e.fetch(&e.card, &pid).await;
    let o = e.psp.execute(&e.card, &p, &capture(5_000), &r).await;
    let message = unknown(&o);
    assert!(
        message.contains("3000") && message.contains("5000"),
        "{message}"
    );
    let c = e.last_call(Endpoint::Capture);
    assert_eq!((c.field("Amount"), c.replayed), (Some("5000"), true));
    assert_eq!(e.steps(&pid).len(), 2, "nothing executed");
    assert_eq!(e.amounts(&pid), (10_000, 3_000, 0, false));
}

#[tokio::test]
async fn paygate_find_transaction_when_the_replay_fails_is_unavailable() {
    let e = env().await;
    let pid = e.reserved("shop-7201", 10_000);
    let call = capture(10_000);
    let r = psp_reference("op-replay-fails");
    e.sim
        .inject_on(Endpoint::Capture, Fault::ServerErrorAfter, 1);
    unknown(&e.exec(&e.card, &pid, &call, "op-replay-fails").await);
    let p = e.fetch(&e.card, &pid).await;
    // The replay itself is lost: the outcome stays open, never "not done".
    e.sim.inject_on(Endpoint::Capture, Fault::DropAfter, 1);
    assert!(matches!(
        e.psp.find_transaction(&e.card, &p, &call, &r).await,
        Err(PspError::Unavailable(_))
    ));
    assert!(e.last_call(Endpoint::Capture).replayed);
    assert_eq!(e.steps(&pid).len(), 2);
    assert_eq!(e.amounts(&pid), (10_000, 10_000, 0, false));
}

#[tokio::test]
async fn paygate_for_config_resolved_talks_to_the_simulator_with_the_configured_keys() {
    let e = env().await;
    let text = format!(
        r#"
[tenant]
id = "acme"
[[erp]]
id = "main"
kind = "memory"
fixtures = "unused.json"
[[method]]
erp = "main"
mandant = "01"
erp_method = "CARD"
psp = "paygate"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
merchant_id = "{MID}"
encryption_key = "plain:{BLOWFISH}"
hmac_key = "plain:{HMAC}"
psp_method = "card"
api_host = "{base}"
"#,
        base = e.sim.base_url()
    );
    let config = paybridge_core::config::Config::parse(&text, "wire.toml").expect("config");
    let psp = PaygatePsp::for_config_resolved(
        &config,
        PaygateTimeouts::default(),
        &SecretRef::resolve_local,
    )
    .expect("the connector builds");
    let debug = format!("{psp:?} {config:?}");
    assert!(debug.contains(MID), "{debug}");
    assert!(
        !debug.contains(BLOWFISH) && !debug.contains(HMAC),
        "{debug}"
    );
    let cfg = &config.methods[0];
    let pid = e.reserved("shop-8001", 2_000);
    let p = psp.fetch(cfg, &pid).await.expect("inquire");
    assert_eq!(p.transactions[0].amount, eur(2_000));
    let o = psp.execute(cfg, &p, &capture(2_000), "pbconfigured").await;
    assert_eq!(done(&o), e.xid_of_step(&pid, 1));
    assert_eq!(e.amounts(&pid), (2_000, 2_000, 0, false));
}

// ------------------------------------------------------------------------------ logs

/// Everything every test in this binary logs, at TRACE, through one global subscriber.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
}

#[tokio::test]
async fn paygate_logs_never_contain_a_password() {
    let e = env_with_timeout(Duration::from_secs(1)).await;
    let pid = e.reserved("shop-9001", 10_000);
    // A reversal that is not sent (logged), a timeout, a wrong key and a wrong MAC.
    done(&e.exec(&e.card, &pid, &capture(1_000), "log-1").await);
    done(&e.exec(&e.card, &pid, &reverse(9_000), "log-2").await);
    e.sim.inject_on(
        Endpoint::Capture,
        Fault::TimeoutAfter(Duration::from_secs(3)),
        1,
    );
    unknown(&e.exec(&e.card, &pid, &capture(1_000), "log-3").await);
    let p = e.fetch(&e.card, &pid).await;
    for (bf, hm) in [
        ("log-wrongBlowfish", HMAC),
        (BLOWFISH, "log-wrong-hmac-password"),
    ] {
        let wrong = connector(
            vec![account(MID, bf, hm, &e.sim.base_url())],
            Duration::from_secs(2),
        );
        declined(&wrong.execute(&e.card, &p, &capture(1), "log-4").await);
        let _ = wrong.fetch(&e.card, &pid).await;
    }
    let text =
        String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
    assert!(
        text.contains("Paygate reversal not sent"),
        "the connector's events were captured"
    );
    for secret in [
        BLOWFISH,
        HMAC,
        "log-wrongBlowfish",
        "log-wrong-hmac-password",
        "notTheBlowfish",
        "not-the-hmac-password",
        "otherBlowfish",
        "other-hmac",
    ] {
        let hex = secret
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        assert!(
            !text.contains(secret) && !text.to_ascii_lowercase().contains(&hex),
            "secret {secret} in logs"
        );
    }
}
