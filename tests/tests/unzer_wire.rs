//! The Unzer connector against the Unzer simulator over loopback HTTP: fetch mapping per method
//! and currency, every money call's path and body as Unzer documents them, the outcome mapping
//! of declines, auth errors, 5xx, 429, timeouts and dropped replies, amount-mismatch checks,
//! reconciliation by reference, and the refusal to follow transaction urls to a foreign host.

use paybridge_core::config::{Config, MethodConfig, Mode, PspAccount, PspKind, Secret, SecretRef};
use paybridge_core::ledger::{PspCall, RefundReason, psp_reference};
use paybridge_core::model::{
    MethodFamily, PaymentMethod, PaymentState, PspPayment, TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use paybridge_core::psp::unzer::{UnzerPsp, UnzerTimeouts};
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use paybridge_testkit::unzer_sim::{Fault, Initial, NewPayment, UnzerSim, sim_bank_data};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const PUB: &str = "s-pub-shop1";
const PRIV: &str = "s-priv-shop1secretvalue";

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

fn account(sim: &UnzerSim, public: &str) -> MethodConfig {
    MethodConfig {
        erp: "main".into(),
        mandant: "01".into(),
        erp_method: "UNZER".into(),
        psp: PspKind::Unzer,
        active: true,
        mode: Mode::Expert,
        invoice_event: "ZE".into(),
        return_event: "RE".into(),
        rounding_tolerance: 0,
        authorization_validity_days: None,
        pending_error_after_hours: 24,
        account: PspAccount {
            public_key: public.into(),
            private_key: SecretRef::Env("UNZER_UNUSED_IN_WIRE_TESTS".into()),
            api_host: Some(sim.base_url()),
            extra: Default::default(),
        },
    }
}

fn connector(private: &str, request_timeout: Duration) -> UnzerPsp {
    UnzerPsp::new(
        HashMap::from([(PUB.to_string(), Secret::new(private))]),
        UnzerTimeouts {
            connect: Duration::from_secs(2),
            request: request_timeout,
        },
    )
    .expect("client builds")
}

struct Env {
    sim: UnzerSim,
    psp: UnzerPsp,
    cfg: MethodConfig,
}

async fn env() -> Env {
    env_with_timeout(Duration::from_secs(5)).await
}

async fn env_with_timeout(request: Duration) -> Env {
    logs();
    let sim = UnzerSim::start().await;
    sim.add_keypair(PUB, PRIV);
    let cfg = account(&sim, PUB);
    Env {
        psp: connector(PRIV, request),
        sim,
        cfg,
    }
}

impl Env {
    async fn fetch(&self, pid: &str) -> PspPayment {
        self.psp.fetch(&self.cfg, pid).await.expect("fetch")
    }

    async fn exec(&self, pid: &str, call: PspCall, op: &str) -> PspOutcome {
        let p = self.fetch(pid).await;
        self.psp
            .execute(&self.cfg, &p, &call, &psp_reference(op))
            .await
    }

    fn amounts(&self, pid: &str) -> (String, String, String, String) {
        let j = self.sim.payment_json(pid).expect("payment");
        let a = &j["amount"];
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        (s("total"), s("charged"), s("canceled"), s("remaining"))
    }
}

fn done(o: &PspOutcome) -> &str {
    match o {
        PspOutcome::Done { tx_id } => tx_id,
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn fetch_maps_every_method_state_and_family() {
    let e = env().await;
    let cases: &[(&str, Initial, PaymentMethod, PaymentState, MethodFamily)] = &[
        (
            "crd",
            Initial::Authorize,
            PaymentMethod::Card,
            PaymentState::Pending,
            MethodFamily::AuthorizeCapture,
        ),
        (
            "crd",
            Initial::Charge,
            PaymentMethod::Card,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "ppl",
            Initial::Authorize,
            PaymentMethod::Paypal,
            PaymentState::Pending,
            MethodFamily::AuthorizeCapture,
        ),
        (
            "ppl",
            Initial::Charge,
            PaymentMethod::Paypal,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "apl",
            Initial::Authorize,
            PaymentMethod::ApplePay,
            PaymentState::Pending,
            MethodFamily::AuthorizeCapture,
        ),
        (
            "sft",
            Initial::Charge,
            PaymentMethod::Sofort,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "eps",
            Initial::Charge,
            PaymentMethod::Eps,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "idl",
            Initial::Charge,
            PaymentMethod::Ideal,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "gro",
            Initial::Charge,
            PaymentMethod::Giropay,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "ali",
            Initial::Charge,
            PaymentMethod::Alipay,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "p24",
            Initial::Charge,
            PaymentMethod::Przelewy24,
            PaymentState::Completed,
            MethodFamily::ChargedInShop,
        ),
        (
            "ppy",
            Initial::ChargePending,
            PaymentMethod::Prepayment,
            PaymentState::Pending,
            MethodFamily::Prepayment,
        ),
        (
            "ivc",
            Initial::ChargePending,
            PaymentMethod::Invoice,
            PaymentState::Pending,
            MethodFamily::InvoiceLegacy,
        ),
        (
            "ivs",
            Initial::ChargePending,
            PaymentMethod::InvoiceSecured,
            PaymentState::Pending,
            MethodFamily::InvoiceLegacy,
        ),
        (
            "piv",
            Initial::Authorize,
            PaymentMethod::PaylaterInvoice,
            PaymentState::Pending,
            MethodFamily::PaylaterInvoice,
        ),
        (
            "pit",
            Initial::Authorize,
            PaymentMethod::PaylaterInstallment,
            PaymentState::Pending,
            MethodFamily::PaylaterDebit,
        ),
        (
            "pdd",
            Initial::Authorize,
            PaymentMethod::PaylaterDirectDebit,
            PaymentState::Pending,
            MethodFamily::PaylaterDebit,
        ),
        (
            "dds",
            Initial::Charge,
            PaymentMethod::SepaDirectDebitSecured,
            PaymentState::Completed,
            // charged at checkout: charged in the shop (model change da9b4e5)
            MethodFamily::ChargedInShop,
        ),
        (
            "crd",
            Initial::AuthorizeFailed,
            PaymentMethod::Card,
            PaymentState::Canceled,
            MethodFamily::AuthorizeCapture,
        ),
        (
            "crd",
            Initial::AuthorizePending,
            PaymentMethod::Card,
            PaymentState::Pending,
            MethodFamily::AuthorizeCapture,
        ),
    ];
    for (infix, initial, method, state, family) in cases {
        let pid = e.sim.create(NewPayment {
            public_key: PUB.into(),
            type_infix: (*infix).into(),
            currency: "EUR".into(),
            amount: "123.45".into(),
            initial: *initial,
            order_id: None,
        });
        let p = e.fetch(&pid).await;
        let ctx = format!("{infix} {initial:?}");
        assert_eq!(p.payment_id, pid, "{ctx}");
        assert_eq!(p.method, *method, "{ctx}");
        assert_eq!(p.state, *state, "{ctx}");
        assert_eq!(p.family(), *family, "{ctx}");
        assert_eq!(p.currency, Currency::EUR);
        assert_eq!(p.transactions.len(), 1, "{ctx}");
        let t = &p.transactions[0];
        assert_eq!(t.amount, eur(12345), "{ctx}");
        assert_eq!(t.reference, None);
        let (kind, id) = match initial {
            Initial::Charge | Initial::ChargePending => (TxKind::Charge, "s-chg-1"),
            _ => (TxKind::Authorize, "s-aut-1"),
        };
        assert_eq!((t.kind, t.id.as_str()), (kind, id), "{ctx}");
        let status = match initial {
            Initial::Authorize | Initial::Charge => TxStatus::Success,
            Initial::AuthorizeFailed => TxStatus::Error,
            Initial::AuthorizePending | Initial::ChargePending => TxStatus::Pending,
        };
        assert_eq!(t.status, status, "{ctx}");
        assert_eq!(
            p.bank_details.is_some(),
            matches!(infix, &"ppy" | &"ivc" | &"ivs"),
            "{ctx}"
        );
    }
    // the payment JSON carries 4-dp amount strings
    let j = e.sim.payment_json("s-pay-1").expect("payment");
    assert_eq!(j["amount"]["total"], "123.4500");
    assert_eq!(j["transactions"][0]["amount"], "123.4500");
}

#[tokio::test]
async fn fetch_converts_jpy_and_kwd_at_the_edge() {
    let e = env().await;
    let jpy = e.sim.authorized(PUB, "crd", "JPY", "12000");
    let p = e.fetch(&jpy).await;
    assert_eq!(p.currency, Currency::JPY);
    assert_eq!(
        p.transactions[0].amount,
        Money::from_minor(12000, Currency::JPY)
    );
    let pos = p.position().expect("position");
    assert_eq!(
        pos.remaining().expect("remaining"),
        Money::from_minor(12000, Currency::JPY)
    );

    let kwd = e.sim.authorized(PUB, "crd", "KWD", "12.345");
    let p = e.fetch(&kwd).await;
    assert_eq!(
        p.transactions[0].amount,
        Money::from_minor(12345, Currency::KWD)
    );

    // Unzer allows 4 decimals; a JPY amount with real decimals is refused at the edge, not rounded
    let bad = e.sim.authorized(PUB, "crd", "JPY", "100.5");
    match e.psp.fetch(&e.cfg, &bad).await {
        Err(PspError::BadReply(m)) => assert!(m.contains("JPY"), "{m}"),
        other => panic!("expected BadReply, got {other:?}"),
    }
}

#[tokio::test]
async fn prepayment_bank_details_receipt_and_review() {
    let e = env().await;
    let pid = e.sim.prepayment(PUB, "EUR", "150.00");
    let p = e.fetch(&pid).await;
    let n: u64 = pid
        .trim_start_matches("s-pay-")
        .parse()
        .expect("numeric id");
    let want = sim_bank_data(n);
    let b = p.bank_details.clone().expect("bank details");
    assert_eq!(
        (b.holder, b.iban, b.bic, b.descriptor),
        (want.holder, want.iban, want.bic, want.descriptor)
    );
    assert_eq!(p.state, PaymentState::Pending);
    assert!(!p.received_in_full().expect("amounts"));
    // fetch GETs the payment, then the initial charge's url
    assert_eq!(
        e.sim
            .calls("GET", &format!("/v1/payments/{pid}/charges/s-chg-1")),
        1
    );

    e.sim.receive_transfer(&pid, "100.00");
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Partly);
    assert_eq!(p.position().expect("pos").charged, eur(10000));
    e.sim.receive_transfer(&pid, "50.00");
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Completed);
    assert!(p.received_in_full().expect("amounts"));
    assert_eq!(
        e.amounts(&pid),
        (
            "150.0000".into(),
            "150.0000".into(),
            "0.0000".into(),
            "0.0000".into()
        )
    );

    let over = e.sim.prepayment(PUB, "EUR", "20.00");
    e.sim.receive_transfer(&over, "25.00");
    assert_eq!(e.fetch(&over).await.state, PaymentState::PaymentReview);

    let card = e.sim.charged(PUB, "crd", "EUR", "10.00");
    e.sim.chargeback(&card, "10.00").expect("chargeback");
    assert_eq!(e.fetch(&card).await.state, PaymentState::Chargeback);
}

#[tokio::test]
async fn capture_full_and_partial_carry_our_reference() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(3000) }, "op-capture-1")
        .await;
    assert_eq!(done(&o), "s-chg-1");
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "30.0000".into(),
            "0.0000".into(),
            "70.0000".into()
        )
    );
    assert_eq!(e.fetch(&pid).await.state, PaymentState::Partly);
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(7000) }, "op-capture-2")
        .await;
    assert_eq!(done(&o), "s-chg-2");
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Completed);
    assert_eq!(p.position().expect("pos").charged, eur(10000));
    let txs = e.sim.transactions(&pid);
    assert_eq!(txs[1].path, format!("/v1/payments/{pid}/charges/s-chg-1"));
    assert_eq!(txs[1].amount, dec("30.00"));
    assert_eq!(
        txs[1].payment_reference.as_deref(),
        Some(psp_reference("op-capture-1").as_str())
    );
    assert_eq!(
        txs[2].payment_reference.as_deref(),
        Some(psp_reference("op-capture-2").as_str())
    );
    // every request authenticated with the private key
    assert!(
        e.sim
            .requests()
            .iter()
            .all(|r| r.key.as_deref() == Some(PRIV))
    );
}

#[tokio::test]
async fn capture_in_jpy_and_kwd_sends_the_currency_exponent() {
    let e = env().await;
    let jpy = e.sim.authorized(PUB, "crd", "JPY", "12000");
    let o = e
        .exec(
            &jpy,
            PspCall::Capture {
                amount: Money::from_minor(5000, Currency::JPY),
            },
            "op-jpy",
        )
        .await;
    assert_eq!(done(&o), "s-chg-1");
    assert_eq!(e.sim.transactions(&jpy)[1].amount, dec("5000"));
    assert_eq!(e.amounts(&jpy).3, "7000.0000");

    let kwd = e.sim.authorized(PUB, "crd", "KWD", "10.000");
    let o = e
        .exec(
            &kwd,
            PspCall::Capture {
                amount: Money::from_minor(1234, Currency::KWD),
            },
            "op-kwd",
        )
        .await;
    assert_eq!(done(&o), "s-chg-1");
    assert_eq!(e.sim.transactions(&kwd)[1].amount, dec("1.234"));
    assert_eq!(e.amounts(&kwd).3, "8.7660");
}

#[tokio::test]
async fn reverse_authorization_partial_then_rest() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(4000) }, "op-rev-1")
        .await;
    assert_eq!(done(&o), "s-cnl-1");
    let t = &e.sim.transactions(&pid)[1];
    assert_eq!(
        (t.kind, t.path.as_str()),
        (
            "cancel-authorize",
            format!("/v1/payments/{pid}/authorize/s-aut-1/cancels/s-cnl-1").as_str()
        )
    );
    assert_eq!(
        t.payment_reference.as_deref(),
        Some(psp_reference("op-rev-1").as_str())
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "60.0000".into(),
            "0.0000".into(),
            "0.0000".into(),
            "60.0000".into()
        )
    );
    let p = e.fetch(&pid).await;
    assert_eq!(p.position().expect("pos").reversed, eur(4000));
    assert_eq!(
        p.position().expect("pos").remaining().expect("rem"),
        eur(6000)
    );

    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(6000) }, "op-rev-2")
        .await;
    assert_eq!(done(&o), "s-cnl-2");
    assert_eq!(e.fetch(&pid).await.state, PaymentState::Canceled);
    // nothing left: Unzer refuses, the connector declines
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(1) }, "op-rev-3")
        .await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code.starts_with("API.340.")),
        "{o:?}"
    );
}

#[tokio::test]
async fn reverse_prepayment_cancels_the_pending_initial_charge() {
    let e = env().await;
    let pid = e.sim.prepayment(PUB, "EUR", "80.00");
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(3000) }, "op-ppy-rev")
        .await;
    assert_eq!(done(&o), "s-cnl-1");
    let t = &e.sim.transactions(&pid)[1];
    assert_eq!(
        t.path,
        format!("/v1/payments/{pid}/charges/s-chg-1/cancels/s-cnl-1")
    );
    assert_eq!(t.kind, "cancel-authorize");
    assert_eq!(t.reason_code.as_deref(), Some("CANCEL"));
    assert_eq!(
        e.amounts(&pid),
        (
            "50.0000".into(),
            "0.0000".into(),
            "0.0000".into(),
            "50.0000".into()
        )
    );
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(5000) }, "op-ppy-rev-2")
        .await;
    assert_eq!(done(&o), "s-cnl-2");
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Canceled);
    assert_eq!(p.position().expect("pos").reversed, eur(8000));
}

#[tokio::test]
async fn paylater_reversal_and_refund_are_payment_level() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "piv", "EUR", "99.99");
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(3333) }, "op-piv-rev")
        .await;
    assert_eq!(done(&o), "s-cnl-1");
    assert_eq!(
        e.sim.transactions(&pid)[1].path,
        format!("/v1/payments/{pid}/authorize/cancels/s-cnl-1")
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "66.6600".into(),
            "0.0000".into(),
            "0.0000".into(),
            "66.6600".into()
        )
    );

    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(6666) }, "op-piv-chg")
        .await;
    assert_eq!(done(&o), "s-chg-1");
    let o = e
        .exec(
            &pid,
            PspCall::Refund {
                amount: eur(2000),
                reason: RefundReason::Credit,
            },
            "op-piv-ref",
        )
        .await;
    assert_eq!(done(&o), "s-cnl-2");
    let t = &e.sim.transactions(&pid)[3];
    assert_eq!(
        t.path,
        format!("/v1/payments/{pid}/charges/cancels/s-cnl-2")
    );
    assert_eq!(
        (t.kind, t.reason_code.as_deref()),
        ("cancel-charge", Some("CREDIT"))
    );
    assert_eq!(
        t.payment_reference.as_deref(),
        Some(psp_reference("op-piv-ref").as_str())
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "66.6600".into(),
            "46.6600".into(),
            "20.0000".into(),
            "0.0000".into()
        )
    );
    let p = e.fetch(&pid).await;
    assert_eq!(p.position().expect("pos").refunded, eur(2000));
}

#[tokio::test]
async fn refund_card_single_charge_with_reason() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    done(
        &e.exec(&pid, PspCall::Capture { amount: eur(10000) }, "op-c")
            .await,
    );
    let o = e
        .exec(
            &pid,
            PspCall::Refund {
                amount: eur(2550),
                reason: RefundReason::Return,
            },
            "op-r",
        )
        .await;
    assert_eq!(done(&o), "s-cnl-1");
    let t = &e.sim.transactions(&pid)[2];
    assert_eq!(
        t.path,
        format!("/v1/payments/{pid}/charges/s-chg-1/cancels/s-cnl-1")
    );
    assert_eq!(
        (t.kind, t.amount, t.reason_code.as_deref()),
        ("cancel-charge", dec("25.50"), Some("RETURN"))
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "74.5000".into(),
            "25.5000".into(),
            "0.0000".into()
        )
    );
    // a partial refund leaves the payment completed
    assert_eq!(e.fetch(&pid).await.state, PaymentState::Completed);
}

/// A card payment captured in two invoices: 60.00 (`s-chg-1`) and 40.00 (`s-chg-2`).
async fn two_charges(e: &Env) -> String {
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    assert_eq!(
        done(
            &e.exec(&pid, PspCall::Capture { amount: eur(6000) }, "c1")
                .await
        ),
        "s-chg-1"
    );
    assert_eq!(
        done(
            &e.exec(&pid, PspCall::Capture { amount: eur(4000) }, "c2")
                .await
        ),
        "s-chg-2"
    );
    pid
}

fn return_of(minor: i64) -> PspCall {
    PspCall::Refund {
        amount: eur(minor),
        reason: RefundReason::Return,
    }
}

/// The `cancel-charge` transactions: (id, charge path segment, amount, reference, reason).
fn cancels(e: &Env, pid: &str) -> Vec<(String, String, Decimal, String, String)> {
    e.sim
        .transactions(pid)
        .into_iter()
        .filter(|t| t.kind == "cancel-charge" && t.status == "success")
        .map(|t| {
            let charge = t
                .path
                .split('/')
                .skip_while(|s| *s != "charges")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            (
                t.id,
                charge,
                t.amount,
                t.payment_reference.unwrap_or_default(),
                t.reason_code.unwrap_or_default(),
            )
        })
        .collect()
}

fn posts(e: &Env) -> Vec<String> {
    e.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect()
}

#[tokio::test]
async fn refund_spreads_over_charges_in_order_under_one_reference() {
    let e = env().await;
    let pid = two_charges(&e).await;
    let r = psp_reference("r-70");
    e.sim.clear_log();
    let o = e.exec(&pid, return_of(7000), "r-70").await;
    assert_eq!(done(&o), "s-cnl-2", "Done names the last part");
    assert_eq!(
        posts(&e),
        vec![
            format!("/v1/payments/{pid}/charges/s-chg-1/cancels"),
            format!("/v1/payments/{pid}/charges/s-chg-2/cancels"),
        ]
    );
    assert_eq!(
        cancels(&e, &pid),
        vec![
            (
                "s-cnl-1".into(),
                "s-chg-1".into(),
                dec("60.00"),
                r.clone(),
                "RETURN".into()
            ),
            (
                "s-cnl-2".into(),
                "s-chg-2".into(),
                dec("10.00"),
                r.clone(),
                "RETURN".into()
            ),
        ]
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "30.0000".into(),
            "70.0000".into(),
            "0.0000".into()
        )
    );
    let p = e.fetch(&pid).await;
    assert_eq!(p.position().expect("pos").refunded, eur(7000));
    assert_eq!(p.state, PaymentState::Completed);
    // reconciliation sums the parts: the refund as one transaction of the full amount
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &return_of(7000), &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.kind, found.status, found.amount),
        (
            "s-cnl-2",
            TxKind::CancelCharge,
            TxStatus::Success,
            eur(7000)
        )
    );
    assert_eq!(found.reference.as_deref(), Some(r.as_str()));
    // our reference on parts worth more than the call: an error, never a match or a send
    let err = e
        .psp
        .find_transaction(&e.cfg, &p, &return_of(5000), &r)
        .await;
    assert!(
        matches!(&err, Err(PspError::BadReply(m)) if m.contains("70.00 EUR") && m.contains("more than")),
        "{err:?}"
    );
    e.sim.clear_log();
    match e.exec(&pid, return_of(5000), "r-70").await {
        PspOutcome::Declined { code, .. } => assert_eq!(code, "PAYBRIDGE.REFUND_REFERENCE"),
        other => panic!("expected Declined, got {other:?}"),
    }
    assert!(posts(&e).is_empty());

    // the rest: s-chg-1 is fully refunded, so 30.00 is one part on s-chg-2
    assert_eq!(
        done(&e.exec(&pid, return_of(3000), "r-30").await),
        "s-cnl-3"
    );
    assert_eq!(
        posts(&e),
        vec![format!("/v1/payments/{pid}/charges/s-chg-2/cancels")]
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "0.0000".into(),
            "100.0000".into(),
            "0.0000".into()
        )
    );
    assert_eq!(e.fetch(&pid).await.state, PaymentState::Canceled);
}

#[tokio::test]
async fn refund_timeout_after_the_first_part_then_retry_sends_only_the_rest() {
    let e = env_with_timeout(Duration::from_millis(400)).await;
    let pid = two_charges(&e).await;
    let call = return_of(7000);
    let r = psp_reference("r-70");
    e.sim.inject_on(
        "/charges/s-chg-1/cancels",
        Fault::TimeoutAfter(Duration::from_secs(3)),
        1,
    );
    e.sim.clear_log();
    let o = e.exec(&pid, call.clone(), "r-70").await;
    match &o {
        PspOutcome::Unknown { message } => assert!(
            message.contains("timed out")
                && message.contains("part 1 of 2 (60.00 EUR on s-chg-1)")
                && message.contains("not sent: 10.00 EUR on s-chg-2"),
            "{message}"
        ),
        other => panic!("expected Unknown, got {other:?}"),
    }
    // Unzer applied the first part; the second was never sent
    assert_eq!(
        posts(&e),
        vec![format!("/v1/payments/{pid}/charges/s-chg-1/cancels")]
    );
    assert_eq!(
        cancels(&e, &pid),
        vec![(
            "s-cnl-1".into(),
            "s-chg-1".into(),
            dec("60.00"),
            r.clone(),
            "RETURN".into()
        )]
    );
    // 60.00 of 70.00 carry our reference: not done, and safe to execute again
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.cfg, &p, &call, &r).await,
        Ok(None)
    );
    e.sim.clear_log();
    let o = e.psp.execute(&e.cfg, &p, &call, &r).await;
    assert_eq!(done(&o), "s-cnl-2");
    assert_eq!(
        posts(&e),
        vec![format!("/v1/payments/{pid}/charges/s-chg-2/cancels")],
        "only the remainder is sent"
    );
    assert_eq!(
        cancels(&e, &pid),
        vec![
            (
                "s-cnl-1".into(),
                "s-chg-1".into(),
                dec("60.00"),
                r.clone(),
                "RETURN".into()
            ),
            (
                "s-cnl-2".into(),
                "s-chg-2".into(),
                dec("10.00"),
                r.clone(),
                "RETURN".into()
            ),
        ]
    );
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "30.0000".into(),
            "70.0000".into(),
            "0.0000".into()
        )
    );
    let p = e.fetch(&pid).await;
    assert_eq!(p.position().expect("pos").refunded, eur(7000));
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.status, found.amount),
        ("s-cnl-2", TxStatus::Success, eur(7000))
    );
}

#[tokio::test]
async fn refund_retry_after_every_part_was_sent_sends_nothing() {
    let e = env_with_timeout(Duration::from_millis(400)).await;
    let pid = two_charges(&e).await;
    let call = return_of(7000);
    let r = psp_reference("r-70");
    e.sim.inject_on(
        "/charges/s-chg-2/cancels",
        Fault::TimeoutAfter(Duration::from_secs(3)),
        1,
    );
    let o = e.exec(&pid, call.clone(), "r-70").await;
    match &o {
        PspOutcome::Unknown { message } => assert!(
            message.contains("part 2 of 2 (10.00 EUR on s-chg-2)")
                && message.contains("s-cnl-1 60.00 EUR on s-chg-1"),
            "{message}"
        ),
        other => panic!("expected Unknown, got {other:?}"),
    }
    let p = e.fetch(&pid).await;
    e.sim.clear_log();
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.kind, found.status, found.amount),
        (
            "s-cnl-2",
            TxKind::CancelCharge,
            TxStatus::Success,
            eur(7000)
        )
    );
    // an execute anyway (e.g. a caller that lost the in-flight mark) sends nothing either
    assert_eq!(done(&e.psp.execute(&e.cfg, &p, &call, &r).await), "s-cnl-2");
    let log = e.sim.requests();
    assert!(
        !log.is_empty() && log.iter().all(|l| l.method == "GET"),
        "{log:?}"
    );
    assert_eq!(cancels(&e, &pid).len(), 2);
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "30.0000".into(),
            "70.0000".into(),
            "0.0000".into()
        )
    );
}

#[tokio::test]
async fn refund_part_declined_midway_names_what_was_refunded() {
    let e = env().await;
    let pid = two_charges(&e).await;
    let call = return_of(7000);
    let r = psp_reference("r-70");
    e.sim.inject_on(
        "/charges/s-chg-2/cancels",
        Fault::Decline {
            code: "API.340.000.004".into(),
            message: "cancel not allowed".into(),
        },
        1,
    );
    match e.exec(&pid, call.clone(), "r-70").await {
        PspOutcome::Declined { code, message } => {
            assert_eq!(code, "PAYBRIDGE.REFUND_PARTIAL");
            assert!(
                message.contains("refund of 70.00 EUR")
                    && message.contains("part 2 of 2 (10.00 EUR on s-chg-2)")
                    && message.contains("refunded so far under this reference: 60.00 EUR (s-cnl-1 60.00 EUR on s-chg-1)")
                    && message.contains("API.340.000.004: cancel not allowed"),
                "{message}"
            );
        }
        other => panic!("expected Declined, got {other:?}"),
    }
    assert_eq!(
        e.amounts(&pid),
        (
            "100.0000".into(),
            "40.0000".into(),
            "60.0000".into(),
            "0.0000".into()
        )
    );
    // once the cause is gone, the same operation can finish: only the 10.00 is sent
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.cfg, &p, &call, &r).await,
        Ok(None)
    );
    e.sim.clear_log();
    assert_eq!(done(&e.psp.execute(&e.cfg, &p, &call, &r).await), "s-cnl-2");
    assert_eq!(
        posts(&e),
        vec![format!("/v1/payments/{pid}/charges/s-chg-2/cancels")]
    );
    assert_eq!(e.amounts(&pid).2, "70.0000");

    // a decline of the first part moved nothing: Unzer's own code
    let other = two_charges(&e).await;
    e.sim.inject_on(
        &format!("/v1/payments/{other}/charges/s-chg-1/cancels"),
        Fault::Decline {
            code: "API.340.000.004".into(),
            message: "cancel not allowed".into(),
        },
        1,
    );
    let o = e.exec(&other, call.clone(), "r-other").await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code == "API.340.000.004"),
        "{o:?}"
    );
    assert!(cancels(&e, &other).is_empty());
}

#[tokio::test]
async fn refund_part_rate_limited_midway_is_unknown_and_finishes_on_retry() {
    let e = env().await;
    let pid = two_charges(&e).await;
    let call = return_of(7000);
    let r = psp_reference("r-70");
    e.sim
        .inject_on("/charges/s-chg-2/cancels", Fault::TooManyRequests, 1);
    let o = e.exec(&pid, call.clone(), "r-70").await;
    // 60.00 moved: never Retryable (that would drop the in-flight mark)
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("not sent") && message.contains("429")),
        "{o:?}"
    );
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.cfg, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(done(&e.psp.execute(&e.cfg, &p, &call, &r).await), "s-cnl-2");
    assert_eq!(e.amounts(&pid).2, "70.0000");
}

#[tokio::test]
async fn refund_part_pending_waits_until_final() {
    let e = env().await;
    let pid = two_charges(&e).await;
    let call = return_of(7000);
    let r = psp_reference("r-70");
    e.sim
        .inject_on("/charges/s-chg-1/cancels", Fault::Pending, 1);
    assert_eq!(
        e.exec(&pid, call.clone(), "r-70").await,
        PspOutcome::Pending {
            tx_id: "s-cnl-1".into()
        }
    );
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.status),
        ("s-cnl-1", TxStatus::Pending)
    );
    // nothing more is sent while a part is pending
    e.sim.clear_log();
    assert_eq!(
        e.psp.execute(&e.cfg, &p, &call, &r).await,
        PspOutcome::Pending {
            tx_id: "s-cnl-1".into()
        }
    );
    assert!(posts(&e).is_empty());
    e.sim.settle(&pid, "s-cnl-1", true);
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.cfg, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(done(&e.psp.execute(&e.cfg, &p, &call, &r).await), "s-cnl-2");
    assert_eq!(
        posts(&e),
        vec![format!("/v1/payments/{pid}/charges/s-chg-2/cancels")]
    );
    assert_eq!(e.amounts(&pid).2, "70.0000");
}

#[tokio::test]
async fn refund_over_the_refundable_total_is_declined_without_sending() {
    let e = env().await;
    let pid = two_charges(&e).await;
    e.sim.clear_log();
    match e.exec(&pid, return_of(10001), "r-over").await {
        PspOutcome::Declined { code, message } => {
            assert_eq!(code, "PAYBRIDGE.REFUND_EXCEEDS");
            assert!(
                message.contains("100.01 EUR")
                    && message.contains("s-chg-1 60.00 EUR")
                    && message.contains("s-chg-2 40.00 EUR"),
                "{message}"
            );
        }
        other => panic!("expected Declined, got {other:?}"),
    }
    let log = e.sim.requests();
    assert!(
        log.iter().all(|l| l.method == "GET"),
        "no money call: {log:?}"
    );
    // after a 70.00 refund, 30.01 exceeds the 30.00 left
    done(&e.exec(&pid, return_of(7000), "r-70").await);
    e.sim.clear_log();
    match e.exec(&pid, return_of(3001), "r-more").await {
        PspOutcome::Declined { code, message } => {
            assert_eq!(code, "PAYBRIDGE.REFUND_EXCEEDS");
            assert!(
                message.contains("30.00 EUR") && message.contains("s-chg-2 30.00 EUR"),
                "{message}"
            );
        }
        other => panic!("expected Declined, got {other:?}"),
    }
    assert!(posts(&e).is_empty());
    assert_eq!(e.amounts(&pid).2, "70.0000");
}

#[tokio::test]
async fn shipment_for_invoice_secured_and_refused_for_prepayment() {
    let e = env().await;
    let pid = e.sim.invoice_secured(PUB, "EUR", "300.00");
    let ship = PspCall::Shipment {
        invoice_id: "RE-1001".into(),
    };
    assert_eq!(
        done(&e.exec(&pid, ship.clone(), "op-ship").await),
        "s-shp-1"
    );
    let t = &e.sim.transactions(&pid)[1];
    assert_eq!(
        (t.kind, t.invoice_id.as_deref()),
        ("shipment", Some("RE-1001"))
    );
    assert_eq!(t.path, format!("/v1/payments/{pid}/shipments/s-shp-1"));
    // a repeated shipment answers COR.700.400.800; the earlier shipment stands
    assert_eq!(
        done(&e.exec(&pid, ship.clone(), "op-ship").await),
        "s-shp-1"
    );
    assert_eq!(e.sim.transactions(&pid).len(), 2);
    // reconciliation finds the shipment by its invoice id
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &ship, &psp_reference("op-ship"))
        .await
        .expect("find");
    assert_eq!(
        found.map(|t| (t.id, t.kind)),
        Some(("s-shp-1".to_string(), TxKind::Shipment))
    );

    let ppy = e.sim.prepayment(PUB, "EUR", "10.00");
    let o = e
        .exec(
            &ppy,
            PspCall::Shipment {
                invoice_id: "RE-2".into(),
            },
            "op-ship-2",
        )
        .await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code == "API.360.000.004"),
        "{o:?}"
    );
}

#[tokio::test]
async fn charge_over_remaining_is_declined_with_unzer_code_even_with_http_200() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(10001) }, "op-over")
        .await;
    match &o {
        PspOutcome::Declined { code, message } => {
            assert_eq!(code, "API.330.100.007");
            assert!(
                message.contains("100.0100") && message.contains("100.0000"),
                "{message}"
            );
        }
        other => panic!("expected Declined, got {other:?}"),
    }
    e.sim.inject(Fault::ErrorsWithOk, 1);
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(10001) }, "op-over")
        .await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code == "API.330.100.007"),
        "{o:?}"
    );
    assert_eq!(
        e.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![400, 200]
    );
    assert_eq!(e.sim.transactions(&pid).len(), 1, "nothing charged");
    // a direct-charge payment cannot be captured
    let sft = e.sim.charged(PUB, "sft", "EUR", "20.00");
    let o = e
        .exec(&sft, PspCall::Capture { amount: eur(100) }, "op-sft")
        .await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code == "API.330.000.004"),
        "{o:?}"
    );
}

#[tokio::test]
async fn wrong_key_is_declined_as_configuration_error_and_not_retried() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let p = e.fetch(&pid).await;
    let wrong = connector("s-priv-wrongkey", Duration::from_secs(5));
    e.sim.clear_log();
    let o = wrong
        .execute(
            &e.cfg,
            &p,
            &PspCall::Capture { amount: eur(100) },
            &psp_reference("op-x"),
        )
        .await;
    match &o {
        PspOutcome::Declined { code, message } => {
            assert_eq!(code, "API.710.000.002");
            assert!(message.contains("configuration error"), "{message}");
            assert!(!message.contains("s-priv-wrongkey"), "{message}");
        }
        other => panic!("expected Declined, got {other:?}"),
    }
    let log = e.sim.requests();
    assert_eq!(log.len(), 1, "exactly one request, no retry: {log:?}");
    assert_eq!(
        (log[0].status, log[0].key.as_deref()),
        (401, Some("s-priv-wrongkey"))
    );
    assert!(
        matches!(wrong.fetch(&e.cfg, &pid).await, Err(PspError::Auth(m)) if m.contains("API.710.000.002"))
    );
    // the public key as private key: 403 API.710.000.005
    let public_as_private = connector(PUB, Duration::from_secs(5));
    assert!(
        matches!(public_as_private.fetch(&e.cfg, &pid).await, Err(PspError::Auth(m)) if m.contains("API.710.000.005"))
    );
    // a public key without a loaded private key never reaches the wire
    let other = account(&e.sim, "s-pub-unknown");
    let o = e
        .psp
        .execute(&other, &p, &PspCall::Capture { amount: eur(100) }, "r")
        .await;
    assert!(
        matches!(&o, PspOutcome::Declined { code, .. } if code == "PAYBRIDGE.CONFIG"),
        "{o:?}"
    );
    assert_eq!(e.sim.requests().len(), 3);
}

#[tokio::test]
async fn another_merchants_payment_is_not_found() {
    let e = env().await;
    e.sim.add_keypair("s-pub-other", "s-priv-other");
    let theirs = e.sim.authorized("s-pub-other", "crd", "EUR", "5.00");
    assert_eq!(
        e.psp.fetch(&e.cfg, &theirs).await,
        Err(PspError::NotFound(theirs.clone()))
    );
    assert_eq!(
        e.psp.fetch(&e.cfg, "s-pay-999").await,
        Err(PspError::NotFound("s-pay-999".into()))
    );
    assert_eq!(
        e.psp.fetch(&e.cfg, "../keypair").await,
        Err(PspError::NotFound("../keypair".into()))
    );
}

#[tokio::test]
async fn server_error_before_processing_is_unknown_and_reconciles_to_absent() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let p = e.fetch(&pid).await;
    let call = PspCall::Capture { amount: eur(2500) };
    let r = psp_reference("op-500");
    e.sim.inject(Fault::ServerErrorBefore, 1);
    // a 500 cannot say whether Unzer processed the call: Unknown, never Declined
    let o = e.psp.execute(&e.cfg, &p, &call, &r).await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("500")),
        "{o:?}"
    );
    assert_eq!(e.sim.transactions(&pid).len(), 1, "nothing applied");
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.find_transaction(&e.cfg, &p, &call, &r).await,
        Ok(None)
    );
    assert_eq!(done(&e.psp.execute(&e.cfg, &p, &call, &r).await), "s-chg-1");

    // 429: known not processed, safe to send later
    e.sim.inject(Fault::TooManyRequests, 1);
    let o = e
        .psp
        .execute(&e.cfg, &p, &PspCall::Capture { amount: eur(100) }, "r2")
        .await;
    assert!(matches!(o, PspOutcome::Retryable { .. }), "{o:?}");
    // a fetch during an outage is Unavailable
    e.sim.inject(Fault::ServerErrorBefore, 1);
    assert!(matches!(
        e.psp.fetch(&e.cfg, &pid).await,
        Err(PspError::Unavailable(_))
    ));
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let p = e.fetch(&pid).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut cfg = e.cfg.clone();
    cfg.account.api_host = Some(format!("http://127.0.0.1:{port}"));
    let o = e
        .psp
        .execute(&cfg, &p, &PspCall::Capture { amount: eur(100) }, "r")
        .await;
    assert!(matches!(o, PspOutcome::Retryable { .. }), "{o:?}");
    assert!(matches!(
        e.psp.fetch(&cfg, &pid).await,
        Err(PspError::Unavailable(_))
    ));
}

#[tokio::test]
async fn timeout_after_processing_is_unknown_then_found_by_reference() {
    let e = env_with_timeout(Duration::from_millis(400)).await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let p = e.fetch(&pid).await;
    let call = PspCall::Capture { amount: eur(4200) };
    let r = psp_reference("op-timeout");
    e.sim.inject(Fault::TimeoutAfter(Duration::from_secs(3)), 1);
    let o = e.psp.execute(&e.cfg, &p, &call, &r).await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("timed out")),
        "{o:?}"
    );
    // Unzer applied it
    assert_eq!(
        e.sim.transactions(&pid)[1].payment_reference.as_deref(),
        Some(r.as_str())
    );
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.kind, found.status),
        ("s-chg-1", TxKind::Charge, TxStatus::Success)
    );
    assert_eq!(found.amount, eur(4200));
    assert_eq!(found.reference.as_deref(), Some(r.as_str()));
    // another operation's reference is not ours
    assert_eq!(
        e.psp
            .find_transaction(&e.cfg, &p, &call, &psp_reference("op-other"))
            .await,
        Ok(None)
    );
}

#[tokio::test]
async fn dropped_reply_and_500_after_processing_are_unknown_and_reconcile() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let p = e.fetch(&pid).await;

    let call = PspCall::Reverse { amount: eur(1000) };
    let r = psp_reference("op-drop");
    e.sim.inject(Fault::DropAfter, 1);
    let o = e.psp.execute(&e.cfg, &p, &call, &r).await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("connection failed after sending")),
        "{o:?}"
    );
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.kind),
        ("s-cnl-1", TxKind::CancelAuthorize)
    );

    let call = PspCall::Capture { amount: eur(2000) };
    let r = psp_reference("op-500-after");
    e.sim.inject(Fault::ServerErrorAfter, 1);
    let o = e.psp.execute(&e.cfg, &p, &call, &r).await;
    assert!(matches!(o, PspOutcome::Unknown { .. }), "{o:?}");
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(
        (found.id.as_str(), found.status),
        ("s-chg-1", TxStatus::Success)
    );
}

#[tokio::test]
async fn reply_amount_or_currency_mismatch_is_never_done() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    e.sim.inject(Fault::ReplyAmount("10.0100".into()), 1);
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(1000) }, "op-mm")
        .await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("10.01") && message.contains("10.00")),
        "{o:?}"
    );
    e.sim.inject(Fault::ReplyCurrency("USD".into()), 1);
    let o = e
        .exec(&pid, PspCall::Capture { amount: eur(1000) }, "op-mm2")
        .await;
    assert!(
        matches!(&o, PspOutcome::Unknown { message } if message.contains("USD")),
        "{o:?}"
    );
    // the stored transactions are right, so reconciliation finds them
    let p = e.fetch(&pid).await;
    let found = e
        .psp
        .find_transaction(
            &e.cfg,
            &p,
            &PspCall::Capture { amount: eur(1000) },
            &psp_reference("op-mm"),
        )
        .await
        .expect("find");
    assert_eq!(found.map(|t| t.id), Some("s-chg-1".into()));
    // our reference on a transaction with another amount is an error, never a match or a resend
    let err = e
        .psp
        .find_transaction(
            &e.cfg,
            &p,
            &PspCall::Capture { amount: eur(999) },
            &psp_reference("op-mm"),
        )
        .await;
    assert!(
        matches!(&err, Err(PspError::BadReply(m)) if m.contains("carries our reference")),
        "{err:?}"
    );
}

#[tokio::test]
async fn pending_charge_is_pending_until_settled() {
    let e = env().await;
    let pid = e.sim.authorized(PUB, "pdd", "EUR", "60.00");
    let call = PspCall::Capture { amount: eur(6000) };
    let r = psp_reference("op-pending");
    e.sim.inject(Fault::Pending, 1);
    let p = e.fetch(&pid).await;
    assert_eq!(
        e.psp.execute(&e.cfg, &p, &call, &r).await,
        PspOutcome::Pending {
            tx_id: "s-chg-1".into()
        }
    );
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Pending);
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.status, TxStatus::Pending);
    e.sim.settle(&pid, "s-chg-1", true);
    let p = e.fetch(&pid).await;
    assert_eq!(p.state, PaymentState::Completed);
    let found = e
        .psp
        .find_transaction(&e.cfg, &p, &call, &r)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.status, TxStatus::Success);
}

#[tokio::test]
async fn transaction_urls_on_a_foreign_host_are_never_fetched() {
    let e = env().await;
    let foreign = UnzerSim::start().await;
    foreign.add_keypair(PUB, PRIV);
    let pid = e.sim.authorized(PUB, "crd", "EUR", "100.00");
    let call = PspCall::Capture { amount: eur(1500) };
    let r = psp_reference("op-ssrf");
    done(&e.exec(&pid, call.clone(), "op-ssrf").await);
    e.sim.set_url_base(Some(&foreign.base_url()));
    let p = e.fetch(&pid).await;
    let res = e.psp.find_transaction(&e.cfg, &p, &call, &r).await;
    assert!(
        matches!(&res, Err(PspError::BadReply(m)) if m.contains("not on the configured Unzer host")),
        "{res:?}"
    );
    let ppy = e.sim.prepayment(PUB, "EUR", "10.00");
    assert!(matches!(
        e.psp.fetch(&e.cfg, &ppy).await,
        Err(PspError::BadReply(_))
    ));
    assert!(
        foreign.requests().is_empty(),
        "foreign host contacted: {:?}",
        foreign.requests()
    );
    // only GETs of the payment itself reached the configured host after the switch
    assert_eq!(
        e.sim.calls("GET", &format!("/v1/payments/{pid}/charges")),
        0
    );
}

#[tokio::test]
async fn latency_within_the_timeout_is_fine() {
    let e = env_with_timeout(Duration::from_secs(2)).await;
    e.sim.set_latency(Duration::from_millis(150));
    let pid = e.sim.authorized(PUB, "apl", "EUR", "12.00");
    assert_eq!(
        done(
            &e.exec(&pid, PspCall::Capture { amount: eur(1200) }, "op-lat")
                .await
        ),
        "s-chg-1"
    );
}

#[tokio::test]
async fn webhook_body_is_unzers() {
    use axum::{Json, Router, routing::post};
    let e = env().await;
    let pid = e.sim.prepayment(PUB, "EUR", "10.00");
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/webhooks/unzer",
        post(move |Json(v): Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/unzer",
        listener.local_addr().expect("addr")
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let status = e
        .sim
        .send_webhook(&url, "payment.completed", &pid)
        .await
        .expect("sent");
    assert_eq!(status, 200);
    let body = got.lock().expect("lock").pop().expect("received");
    assert_eq!(body["event"], "payment.completed");
    assert_eq!(body["publicKey"], PUB);
    assert_eq!(body["paymentId"], pid.as_str());
    assert_eq!(
        body["retrieveUrl"],
        format!("{}/v1/payments/{pid}", e.sim.base_url())
    );
    server.abort();
}

#[tokio::test]
async fn for_config_resolves_keys_and_never_leaks_them() {
    logs();
    let sim = UnzerSim::start().await;
    sim.add_keypair(PUB, PRIV);
    let toml = |private: &str| {
        format!(
            r#"
[tenant]
id = "acme"

[[erp]]
id = "main"
kind = "memory"
fixtures = "x.json"

[[method]]
erp = "main"
mandant = "01"
erp_method = "UNZER_CARD"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "{PUB}"
private_key = "{private}"
api_host = "{}"
"#,
            sim.base_url()
        )
    };
    let cfg = Config::parse(&toml(&format!("plain:{PRIV}")), "t.toml").expect("config");
    let psp = UnzerPsp::for_config(&cfg).expect("connector");
    assert_eq!(psp.public_keys().collect::<Vec<_>>(), vec![PUB]);
    assert!(!format!("{psp:?}").contains(PRIV));
    let pid = sim.authorized(PUB, "crd", "EUR", "1.00");
    assert_eq!(
        psp.fetch(&cfg.methods[0], &pid)
            .await
            .expect("fetch")
            .method,
        PaymentMethod::Card
    );

    let cfg = Config::parse(&toml("env:PAYBRIDGE_TEST_SURELY_UNSET_UNZER_KEY"), "t.toml")
        .expect("config");
    let err = UnzerPsp::for_config(&cfg).expect_err("missing env var");
    let text = err.to_string();
    assert!(
        text.contains("main/01/UNZER_CARD")
            && text.contains("PAYBRIDGE_TEST_SURELY_UNSET_UNZER_KEY"),
        "{text}"
    );

    let cfg = Config::parse(&toml("plain:p-priv-prodkey"), "t.toml").expect("config");
    let text = UnzerPsp::for_config(&cfg)
        .expect_err("environment mismatch")
        .to_string();
    assert!(
        text.contains("different environments") && !text.contains("p-priv-prodkey"),
        "{text}"
    );

    let remote =
        toml(&format!("plain:{PRIV}")).replace(&sim.base_url(), "http://unzer.example.com");
    let cfg = Config::parse(&remote, "t.toml").expect("config");
    let text = UnzerPsp::for_config(&cfg)
        .expect_err("plain http to a remote host")
        .to_string();
    assert!(text.contains("https") && !text.contains(PRIV), "{text}");
}

#[tokio::test]
async fn simulator_speaks_unzers_error_objects_and_rules() {
    logs();
    let sim = UnzerSim::start().await;
    sim.add_keypair(PUB, PRIV);
    let http = reqwest::Client::new();
    let pid = sim.create(NewPayment {
        public_key: PUB.into(),
        type_infix: "piv".into(),
        currency: "EUR".into(),
        amount: "100.00".into(),
        initial: Initial::Authorize,
        order_id: Some("ORDER-77".into()),
    });
    let base = sim.base_url();
    let post = |path: String, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .basic_auth(PRIV, Some(""))
            .json(&body)
            .send()
    };
    // no key: 401 with an error object
    let r = http
        .get(format!("{base}/v1/payments/{pid}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (j["isError"].as_bool(), j["errors"][0]["code"].as_str()),
        (Some(true), Some("API.710.000.002"))
    );
    assert!(j["id"].as_str().is_some_and(|id| id.starts_with("s-err-")));
    assert!(
        j["errors"][0]["merchantMessage"].is_string()
            && j["errors"][0]["customerMessage"].is_string()
    );
    // by orderId
    let r = http
        .get(format!("{base}/v1/payments/ORDER-77"))
        .basic_auth(PRIV, Some(""))
        .send()
        .await
        .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (
            j["id"].as_str(),
            j["state"]["id"].as_i64(),
            j["state"]["name"].as_str()
        ),
        (Some(pid.as_str()), Some(0), Some("pending"))
    );
    // more than 4 decimals refused
    let r = post(
        format!("/v1/payments/{pid}/charges"),
        serde_json::json!({"amount": "10.12345"}),
    )
    .await
    .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(j["errors"][0]["code"], "API.500.300.999");
    // Paylater: tx-level cancel refused [INF strict]; partial charge then full reversal refused (php-sdk)
    let r = post(
        format!("/v1/payments/{pid}/authorize/s-aut-1/cancels"),
        serde_json::json!({"amount": "1.00"}),
    )
    .await
    .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let r = post(
        format!("/v1/payments/{pid}/charges"),
        serde_json::json!({"amount": 33.33}),
    )
    .await
    .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (
            j["id"].as_str(),
            j["isSuccess"].as_bool(),
            j["amount"].as_str()
        ),
        (Some("s-chg-1"), Some(true), Some("33.3300"))
    );
    let r = post(
        format!("/v1/payments/{pid}/authorize/cancels"),
        serde_json::json!({}),
    )
    .await
    .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(j["errors"][0]["code"], "API.340.000.004");
    let r = post(
        format!("/v1/payments/{pid}/authorize/cancels"),
        serde_json::json!({"amount": "66.67"}),
    )
    .await
    .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (j["id"].as_str(), j["amount"].as_str()),
        (Some("s-cnl-1"), Some("66.6700"))
    );
    let p = sim.payment_json(&pid).expect("payment");
    assert_eq!(
        (p["state"]["id"].as_i64(), p["amount"]["remaining"].as_str()),
        (Some(1), Some("0.0000"))
    );
    assert_eq!(
        p["transactions"][2]["url"],
        format!("{base}/v1/payments/{pid}/authorize/cancels/s-cnl-1")
    );
    assert_eq!(p["transactions"][2]["type"], "cancel-authorize");
    // shipment needs an invoiceId
    let ivs = sim.invoice_secured(PUB, "EUR", "10.00");
    let r = post(
        format!("/v1/payments/{ivs}/shipments"),
        serde_json::json!({}),
    )
    .await
    .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(j["errors"][0]["code"], "API.360.100.025");
    // the prepayment-style initial charge shows its transfer data
    let r = http
        .get(format!("{base}/v1/payments/{ivs}/charges/s-chg-1"))
        .basic_auth(PRIV, Some(""))
        .send()
        .await
        .expect("send");
    let j: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (j["isPending"].as_bool(), j["processing"]["iban"].as_str()),
        (Some(true), Some("DE89370400440532013000"))
    );
}

/// Everything every test in this binary logs, at TRACE, through one global subscriber (set
/// before the first event, so no callsite caches "no interest").
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
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
async fn logs_never_contain_a_private_key() {
    use base64::Engine;
    let e = env_with_timeout(Duration::from_millis(300)).await;
    let pid = e.sim.prepayment(PUB, "EUR", "40.00");
    done(
        &e.exec(&pid, PspCall::Reverse { amount: eur(1000) }, "log-1")
            .await,
    );
    e.sim.inject(Fault::TimeoutAfter(Duration::from_secs(2)), 1);
    let o = e
        .exec(&pid, PspCall::Reverse { amount: eur(1000) }, "log-2")
        .await;
    assert!(matches!(o, PspOutcome::Unknown { .. }), "{o:?}");
    let wrong = connector("s-priv-anotherwrongkey", Duration::from_secs(2));
    let p = e.fetch(&pid).await;
    wrong
        .execute(&e.cfg, &p, &PspCall::Reverse { amount: eur(100) }, "r")
        .await;
    let text = String::from_utf8_lossy(&logs().0.lock().expect("lock")).to_string();
    assert!(
        text.contains("unzer reply") && text.contains("unzer request lost"),
        "connector events were captured"
    );
    // every key any test in this binary used, raw and as the Basic credential
    for secret in [
        PRIV,
        "s-priv-anotherwrongkey",
        "s-priv-wrongkey",
        "s-priv-other",
    ] {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{secret}:"));
        assert!(
            !text.contains(secret) && !text.contains(&basic),
            "secret {secret} in logs"
        );
    }
}
