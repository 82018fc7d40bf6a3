//! Unit tests of [`decide`], one group per section of behaviour.md (§2–§3.5a, §4).
//!
//! Each test feeds the engine facts (ERP order, PSP payment, ledger, config) and asserts the exact
//! outcome: purposes, PSP calls to the cent, ERP writes, flags and notes. Sequences are driven the
//! way the runtime drives them: a decision's plans become ledger operations
//! (`Operation::new`), are run to `Done` (PSP transaction carrying our reference appended to the
//! PSP view, ERP writes applied to the order) and the engine is asked again.

use super::*;
use crate::config::{PspKind, Secret, SecretRef};
use crate::ledger::psp_reference;
use crate::model::{
    BankDetails, CreditNote, Invoice, LineStatus, OrderLine, PaymentMethod, PspTransaction,
};
use crate::money::Currency;
use crate::testing::line;
use LineStatus::{Cancelled as STO, NotDeliverable as NLB, Open as OPN};
use Mode::{Expert, Standard};
use PaymentMethod as PM;
use Purpose as P;

// ----------------------------------------------------------------------------- builders

const INVOICE_EVENT: &str = "ZE-INV";
const RETURN_EVENT: &str = "RE-RET";
const ALL_METHODS: [PM; 17] = [
    PM::SepaDirectDebitSecured,
    PM::PaylaterDirectDebit,
    PM::Invoice,
    PM::InvoiceSecured,
    PM::InvoicePaylater,
    PM::PaylaterInvoice,
    PM::PaylaterInstallment,
    PM::Prepayment,
    PM::Paypal,
    PM::Card,
    PM::Sofort,
    PM::Eps,
    PM::Ideal,
    PM::Giropay,
    PM::Alipay,
    PM::Przelewy24,
    PM::ApplePay,
];

fn eur(s: &str) -> Money {
    Money::parse(s, Currency::EUR).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap() // 2023-11-14 22:13:20 UTC
}

fn key() -> OrderKey {
    OrderKey::new("acme", "main", "1001")
}

fn config(mode: Mode) -> MethodConfig {
    MethodConfig {
        erp: "main".into(),
        mandant: "01".into(),
        erp_method: "UNZER".into(),
        psp: PspKind::Unzer,
        active: true,
        mode,
        invoice_event: INVOICE_EVENT.into(),
        return_event: RETURN_EVENT.into(),
        rounding_tolerance: 2,
        public_key: "s-pub-test".into(),
        private_key: SecretRef::Plain(Secret::new("s-priv-test")),
        api_host: None,
    }
}

fn bank() -> BankDetails {
    BankDetails {
        holder: "Unzer E-Com GmbH".into(),
        iban: "DE89370400440532013000".into(),
        bic: "COBADEFFXXX".into(),
        descriptor: "4567.1234.5678".into(),
    }
}

fn tx(kind: TxKind, status: TxStatus, amount: Money) -> PspTransaction {
    PspTransaction {
        id: format!("s-{kind:?}-shop"),
        kind,
        status,
        amount,
        reference: None,
    }
}

/// What the shop started, by family: authorize, charge, or the pending initial charge of
/// prepayment / legacy invoice.
fn initial_tx(method: PM) -> (TxKind, TxStatus) {
    match method.base_family() {
        MethodFamily::AuthorizeCapture
        | MethodFamily::PaylaterInvoice
        | MethodFamily::PaylaterDebit => (TxKind::Authorize, TxStatus::Success),
        MethodFamily::ChargedInShop => (TxKind::Charge, TxStatus::Success),
        MethodFamily::Prepayment | MethodFamily::InvoiceLegacy => {
            (TxKind::Charge, TxStatus::Pending)
        }
    }
}

fn payment(method: PM, kind: TxKind, status: TxStatus, amount: Money) -> PspPayment {
    let charged = kind == TxKind::Charge && status == TxStatus::Success;
    PspPayment {
        payment_id: "s-pay-1".into(),
        state: if charged {
            PaymentState::Completed
        } else {
            PaymentState::Pending
        },
        method,
        currency: amount.currency(),
        transactions: vec![tx(kind, status, amount)],
        bank_details: (method == PM::Prepayment).then(bank),
    }
}

/// One order with its PSP payment, ledger and config: the engine's whole input.
#[derive(Clone)]
struct S {
    order: ErpOrder,
    psp: Option<PspPayment>,
    ledger: Vec<Operation>,
    cfg: MethodConfig,
}

impl S {
    /// An imported order (HOLD) whose lines are (id, amount); the shop's payment matches it.
    fn new(method: PM, mode: Mode, lines: &[(&str, &str)]) -> S {
        S::in_currency(method, mode, Currency::EUR, lines)
    }

    fn in_currency(method: PM, mode: Mode, cur: Currency, lines: &[(&str, &str)]) -> S {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(id, a)| line(id, OPN, Money::parse(a, cur).unwrap()))
            .collect();
        let total = Money::sum(cur, lines.iter().map(|l| &l.amount)).unwrap();
        let (kind, status) = initial_tx(method);
        S {
            order: ErpOrder {
                order_id: "1001".into(),
                mandant: "01".into(),
                shop_order_no: "S-5001".into(),
                psp_payment_id: Some("s-pay-1".into()),
                payment_method: "UNZER".into(),
                status: OrderStatus::Hold,
                total,
                lines,
                shipping_lock: false,
                invoices: vec![],
                credit_notes: vec![],
            },
            psp: Some(payment(method, kind, status, total)),
            ledger: vec![],
            cfg: config(mode),
        }
    }

    fn money(&self, s: &str) -> Money {
        Money::parse(s, self.order.total.currency()).unwrap()
    }

    fn pay(&mut self) -> &mut PspPayment {
        self.psp.as_mut().expect("a PSP payment")
    }

    fn decide(&self) -> Decision {
        let k = key();
        decide(&Input {
            key: &k,
            order: &self.order,
            psp: self.psp.as_ref(),
            ledger: &self.ledger,
            config: Some(&self.cfg),
            now: now(),
        })
    }

    /// For families where the mode must not matter: both modes decide the same.
    fn decide_any_mode(&self) -> Decision {
        let mut other = self.clone();
        other.cfg.mode = if self.cfg.mode == Standard {
            Expert
        } else {
            Standard
        };
        let d = self.decide();
        assert_eq!(d, other.decide(), "the mode changed the decision");
        d
    }

    /// Conditional insert of every plan (a plan already in the ledger is a no-op).
    fn insert(&mut self, d: &Decision) {
        for p in &d.plans {
            let op = Operation::new(&key(), p.clone(), now());
            if !self.ledger.iter().any(|o| o.id == op.id) {
                self.ledger.push(op);
            }
        }
    }

    /// Runs every not-yet-done operation of `purpose` to Done, like the runtime.
    fn complete(&mut self, purpose: Purpose) {
        for i in 0..self.ledger.len() {
            if self.ledger[i].plan.purpose == purpose && self.ledger[i].status != OpStatus::Done {
                self.finish(i);
            }
        }
    }

    fn complete_all(&mut self) {
        for i in 0..self.ledger.len() {
            if !self.ledger[i].status.is_terminal() {
                self.finish(i);
            }
        }
    }

    fn finish(&mut self, i: usize) {
        let plan = self.ledger[i].plan.clone();
        let reference = psp_reference(&self.ledger[i].id);
        if let Some(call) = &plan.psp {
            let p = self.pay();
            let (kind, amount) = match call {
                PspCall::Capture { amount } => (TxKind::Charge, *amount),
                PspCall::Reverse { amount } => (TxKind::CancelAuthorize, *amount),
                PspCall::Refund { amount, .. } => (TxKind::CancelCharge, *amount),
                PspCall::Shipment { .. } => (TxKind::Shipment, Money::zero(p.currency)),
            };
            let id = format!("s-tx-{}", p.transactions.len());
            p.transactions.push(PspTransaction {
                id: id.clone(),
                kind,
                status: TxStatus::Success,
                amount,
                reference: Some(reference),
            });
            self.ledger[i].psp_done = true;
            self.ledger[i].psp_tx = Some(id);
        }
        for w in &plan.erp {
            match w {
                ErpWrite::Release if self.order.status == OrderStatus::Hold => {
                    self.order.status = OrderStatus::Open;
                }
                ErpWrite::SetShippingLock => self.order.shipping_lock = true,
                ErpWrite::ClearShippingLock => self.order.shipping_lock = false,
                ErpWrite::MarkInvoiceCaptured { invoice_id, .. } => {
                    let inv = self
                        .order
                        .invoices
                        .iter_mut()
                        .find(|i| &i.invoice_id == invoice_id);
                    inv.expect("marked invoice exists").captured = true;
                }
                _ => {}
            }
        }
        let op = &mut self.ledger[i];
        op.erp_done = plan.erp.len();
        op.status = OpStatus::Done;
    }

    fn set_status(&mut self, purpose: Purpose, status: OpStatus) {
        let op = self
            .ledger
            .iter_mut()
            .find(|o| o.plan.purpose == purpose)
            .expect("op in ledger");
        op.status = status;
        if status == OpStatus::Failed {
            op.last_error = Some("PSP declined (COR.000.100.112)".into());
        }
    }

    /// Decide, insert, run everything: one runtime round.
    fn step(&mut self) -> Decision {
        let d = self.decide();
        self.insert(&d);
        self.complete_all();
        d
    }

    /// Rounds until the engine has nothing more to plan (must converge quickly).
    fn settle(&mut self) {
        for _ in 0..10 {
            if self.step().plans.is_empty() {
                return;
            }
        }
        panic!("the engine did not converge: {:?}", self.decide());
    }

    /// Ships `lines` with invoice `id` of `amount` (ERP).
    fn invoice(&mut self, id: &str, amount: &str, lines: &[&str]) {
        for l in self
            .order
            .lines
            .iter_mut()
            .filter(|l| lines.contains(&l.line_id.as_str()))
        {
            l.status = LineStatus::Shipped;
        }
        let amount = self.money(amount);
        self.order.invoices.push(Invoice {
            invoice_id: id.into(),
            amount,
            captured: false,
        });
    }

    fn cancel(&mut self, lines: &[&str], status: LineStatus) {
        for l in self
            .order
            .lines
            .iter_mut()
            .filter(|l| lines.contains(&l.line_id.as_str()))
        {
            l.status = status;
        }
    }

    fn credit(&mut self, id: &str, invoice: Option<&str>, amount: &str) {
        let amount = self.money(amount);
        self.order.credit_notes.push(CreditNote {
            credit_id: id.into(),
            invoice_id: invoice.map(str::to_string),
            amount,
            settled: false,
        });
    }

    /// A customer transfer (prepayment / invoice) arrives at the PSP.
    fn receive(&mut self, amount: &str) {
        let amount = self.money(amount);
        let p = self.pay();
        p.transactions
            .push(tx(TxKind::Charge, TxStatus::Success, amount));
        p.state = if p.received_in_full().unwrap() {
            PaymentState::Completed
        } else {
            PaymentState::Partly
        };
    }

    fn released(mut self) -> S {
        self.settle();
        assert_eq!(self.order.status, OrderStatus::Open, "{:?}", self.decide());
        self
    }
}

fn purposes(d: &Decision) -> Vec<Purpose> {
    d.plans.iter().map(|p| p.purpose).collect()
}

fn get(d: &Decision, purpose: Purpose) -> &Plan {
    d.plans
        .iter()
        .find(|p| p.purpose == purpose)
        .unwrap_or_else(|| panic!("no {purpose:?} in {d:#?}"))
}

/// The plan's ERP writes without its comment (which §4 tests check separately).
fn writes(p: &Plan) -> Vec<ErpWrite> {
    p.erp
        .iter()
        .filter(|w| !matches!(w, ErpWrite::Comment { .. }))
        .cloned()
        .collect()
}

fn flags(d: &Decision) -> Vec<(Severity, &str)> {
    d.flags
        .iter()
        .map(|f| (f.severity, f.code.as_str()))
        .collect()
}

fn capture(a: Money) -> Option<PspCall> {
    Some(PspCall::Capture { amount: a })
}

fn reverse(a: Money) -> Option<PspCall> {
    Some(PspCall::Reverse { amount: a })
}

fn refund(a: Money, reason: RefundReason) -> Option<PspCall> {
    Some(PspCall::Refund { amount: a, reason })
}

fn mark(invoice: &str, amount: Money) -> ErpWrite {
    ErpWrite::MarkInvoiceCaptured {
        invoice_id: invoice.into(),
        event_code: INVOICE_EVENT.into(),
        amount,
    }
}

fn no_money(d: &Decision) {
    assert!(
        d.plans.iter().all(|p| p.psp.is_none()),
        "unexpected PSP call: {d:#?}"
    );
}

const LINES: &[(&str, &str)] = &[("L1", "60.00"), ("L2", "30.00"), ("L3", "10.00")];

// ----------------------------------------------------------------------------- §2 modes

#[test]
fn spec_2_standard_captures_full_amount_before_release_then_releases() {
    for method in [PM::Card, PM::ApplePay, PM::Paypal] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::CaptureOrder], "{method:?}");
        assert_eq!(get(&d, P::CaptureOrder).psp, capture(eur("100.00")));
        assert!(
            d.plans.iter().all(|p| !p.erp.contains(&ErpWrite::Release)),
            "no release before the capture"
        );
        assert!(d.flags.is_empty() && d.notes.is_empty());
        s.insert(&d);
        // planned, then running: nothing new, still no release
        assert_eq!(s.decide(), Decision::default());
        s.set_status(P::CaptureOrder, OpStatus::Running);
        assert_eq!(s.decide(), Decision::default());
        s.complete(P::CaptureOrder);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::Release]);
        assert_eq!(writes(get(&d, P::Release)), [ErpWrite::Release]);
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        assert_eq!(s.order.status, OrderStatus::Open);
        assert_eq!(s.decide(), Decision::default(), "idempotent once done");
    }
}

#[test]
fn spec_2_standard_release_follows_a_done_capture_even_before_the_psp_view_shows_it() {
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Done); // PSP view not refreshed yet
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    no_money(&d);
}

#[test]
fn spec_2_standard_capture_before_release_is_budgeted_against_operations_in_progress() {
    // The order was cancelled on HOLD: the reversal of the whole authorization is planned.
    let mut s = S::new(PM::Card, Standard, LINES);
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide();
    assert_eq!(
        (purposes(&d), d.plans[0].psp.clone()),
        (vec![P::CancelOrder], reverse(eur("100.00")))
    );
    s.insert(&d);
    // A concurrent evaluation still holds the facts from before the cancellation (the stored
    // record) but reads the current ledger: the authorization is already spoken for.
    s.cancel(&["L1", "L2", "L3"], OPN);
    let d = s.decide();
    assert!(
        !purposes(&d).contains(&P::CaptureOrder),
        "captures money reserved by the reversal: {d:#?}"
    );
    no_money(&d);
}

#[test]
fn spec_2_standard_shop_already_captured_is_not_captured_again() {
    // authorized, then captured by the shop in full: nothing left to capture
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.pay()
            .transactions
            .push(tx(TxKind::Charge, TxStatus::Success, eur("100.00")));
        let d = s.decide();
        assert_eq!(purposes(&d), [P::Release], "{mode:?}");
        no_money(&d);
    }
    // the shop captured a part: standard captures the rest before release
    let mut s = S::new(PM::Card, Standard, LINES);
    s.pay()
        .transactions
        .push(tx(TxKind::Charge, TxStatus::Success, eur("30.00")));
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureOrder]);
    assert_eq!(get(&d, P::CaptureOrder).psp, capture(eur("70.00")));
}

#[test]
fn spec_2_standard_invoices_are_only_checked_against_the_order_total() {
    let mut s = S::new(PM::Card, Standard, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.step();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(
        get(&d, P::BookInvoice).psp,
        None,
        "standard mode captured already: no second capture"
    );
    assert_eq!(writes(get(&d, P::BookInvoice)), [mark("R1", eur("60.00"))]);
    s.invoice("R2", "40.00", &["L2", "L3"]);
    let d = s.step();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(get(&d, P::BookInvoice).doc_id, "R2");
    // Σ invoices 100.03 > order 100.00 + tolerance 0.02
    s.invoice("R3", "0.03", &[]);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "invoices_exceed_order")]);
    assert_eq!(purposes(&d), [P::Problem]);
    // within the tolerance it is accepted
    let mut s2 = S::new(PM::Card, Standard, LINES).released();
    s2.invoice("R1", "100.02", &["L1", "L2", "L3"]);
    assert_eq!(purposes(&s2.decide()), [P::BookInvoice]);
}

#[test]
fn spec_2_expert_releases_without_capture_and_captures_each_invoice_exactly() {
    for method in [PM::Card, PM::ApplePay, PM::Paypal] {
        let mut s = S::new(method, Expert, LINES);
        let d = s.step();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        no_money(&d);
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.step();
        assert_eq!(purposes(&d), [P::CaptureInvoice]);
        assert_eq!(get(&d, P::CaptureInvoice).psp, capture(eur("60.00")));
        s.invoice("R2", "40.00", &["L2", "L3"]);
        let d = s.step();
        assert_eq!(purposes(&d), [P::CaptureInvoice]);
        assert_eq!(
            (
                get(&d, P::CaptureInvoice).doc_id.as_str(),
                get(&d, P::CaptureInvoice).psp.clone()
            ),
            ("R2", capture(eur("40.00")))
        );
        s.order.status = OrderStatus::Closed;
        assert_eq!(
            s.decide(),
            Decision::default(),
            "fully captured: nothing to close"
        );
    }
}

#[test]
fn spec_2_expert_cancellation_before_capture_reverses_and_standard_refunds() {
    for (mode, expected) in [
        (Expert, (P::CancelOrder, reverse(eur("100.00")))),
        (
            Standard,
            (P::RefundOrder, refund(eur("100.00"), RefundReason::Cancel)),
        ),
    ] {
        let mut s = S::new(PM::Card, mode, LINES).released();
        s.cancel(&["L1", "L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.decide();
        assert_eq!(purposes(&d), [expected.0], "{mode:?}");
        assert_eq!(d.plans[0].psp, expected.1);
    }
}

#[test]
fn spec_2_expert_closes_the_payment_after_the_last_partial_delivery() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.cancel(&["L2", "L3"], STO);
    let d = s.decide();
    assert_eq!(
        purposes(&d),
        [P::CaptureInvoice],
        "expert sends nothing for cancelled lines"
    );
    s.insert(&d);
    s.order.status = OrderStatus::Closed;
    assert_eq!(
        s.decide(),
        Decision::default(),
        "not while the capture is in progress"
    );
    s.complete(P::CaptureInvoice);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::ClosePayment]);
    assert_eq!(
        get(&d, P::ClosePayment).psp,
        reverse(eur("40.00")),
        "exactly the remainder"
    );
    s.insert(&d);
    s.complete_all();
    assert_eq!(s.decide(), Decision::default());
    let pos = s.psp.as_ref().unwrap().position().unwrap();
    assert_eq!(
        (pos.charged, pos.reversed, pos.remaining().unwrap()),
        (eur("60.00"), eur("40.00"), eur("0.00"))
    );
}

#[test]
fn spec_2_charged_in_the_shop_only_refunds_remain() {
    for method in [
        PM::Sofort,
        PM::Eps,
        PM::Ideal,
        PM::Giropay,
        PM::Alipay,
        PM::Przelewy24,
    ] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::BookInvoice]);
        assert_eq!(writes(&d.plans[0]), [mark("R1", eur("60.00"))]);
        no_money(&d);
        s.insert(&d);
        s.complete_all();
        s.credit("C1", Some("R1"), "15.00");
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::RefundCredit]);
        assert_eq!(d.plans[0].psp, refund(eur("15.00"), RefundReason::Return));
    }
}

// ----------------------------------------------------------------------------- §3.1 release

#[test]
fn spec_3_1_1_pending_payment_stays_on_hold_with_a_hint() {
    let cases = [
        (PM::Card, Standard),
        (PM::Card, Expert),
        (PM::Sofort, Standard),
        (PM::PaylaterInvoice, Expert),
    ];
    for (method, mode) in cases {
        let mut s = S::new(method, mode, LINES);
        s.pay().transactions[0].status = TxStatus::Pending;
        let d = s.decide();
        assert!(d.plans.is_empty(), "{method:?} {mode:?}: {d:#?}");
        assert_eq!(flags(&d), [(Severity::Hint, "pending")]);
        assert_eq!(d.errors().count(), 0, "a hint, not an error");
        // re-checked later: once accepted it goes on
        s.pay().transactions[0].status = TxStatus::Success;
        let d = s.decide();
        assert!(d.flags.is_empty());
        let first = if method == PM::Card && mode == Standard {
            P::CaptureOrder
        } else {
            P::Release
        };
        assert_eq!(purposes(&d), [first]);
    }
}

#[test]
fn spec_3_1_3_accepted_matching_payment_is_released_per_mode() {
    let s = S::new(PM::Card, Expert, LINES);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::Release]);
    assert!(d.flags.is_empty() && d.notes.is_empty());
    let s = S::new(PM::Card, Standard, LINES);
    assert_eq!(purposes(&s.decide()), [P::CaptureOrder]);
}

#[test]
fn spec_3_1_2_difference_within_tolerance_is_absorbed_and_noted() {
    for (psp_amount, mode) in [
        ("100.02", Expert),
        ("99.98", Expert),
        ("100.02", Standard),
        ("99.98", Standard),
    ] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.pay().transactions[0].amount = eur(psp_amount);
        let d = s.decide();
        assert_eq!(d.errors().count(), 0, "{psp_amount} {mode:?}");
        assert_eq!(d.notes.len(), 1);
        assert!(
            d.notes[0].contains("rounding difference") && d.notes[0].contains(psp_amount),
            "{:?}",
            d.notes
        );
        match mode {
            Expert => assert_eq!(purposes(&d), [P::Release]),
            Standard => {
                assert_eq!(purposes(&d), [P::CaptureOrder]);
                assert_eq!(
                    d.plans[0].psp,
                    capture(eur(psp_amount)),
                    "the whole authorization"
                );
            }
        }
    }
}

#[test]
fn spec_3_1_4_amount_mismatch_releases_with_shipping_lock_and_error() {
    for mode in [Standard, Expert] {
        for psp_amount in ["99.97", "100.03", "10.00"] {
            let mut s = S::new(PM::Card, mode, LINES);
            s.pay().transactions[0].amount = eur(psp_amount);
            let d = s.decide();
            assert_eq!(
                purposes(&d),
                [P::ReleaseLocked, P::Problem],
                "{mode:?} {psp_amount}"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [ErpWrite::SetShippingLock, ErpWrite::Release],
                "lock before release"
            );
            assert_eq!(flags(&d), [(Severity::Error, "authorization_check")]);
            assert!(d.flags[0].message.contains("amount mismatch"));
            no_money(&d);
            s.insert(&d);
            s.complete_all();
            assert!(s.order.shipping_lock && s.order.status == OrderStatus::Open);
        }
    }
}

#[test]
fn spec_3_1_4_rejected_payments_release_with_lock() {
    type Spoil = fn(&mut S);
    let cases: [(&str, Spoil); 7] = [
        ("cancelled", |s| s.pay().state = PaymentState::Canceled),
        ("review", |s| s.pay().state = PaymentState::PaymentReview),
        ("chargeback", |s| s.pay().state = PaymentState::Chargeback),
        ("authorization failed", |s| {
            s.pay().transactions[0].status = TxStatus::Error
        }),
        ("no authorization", |s| s.pay().transactions.clear()),
        ("currency", |s| {
            let p = s.pay();
            p.currency = Currency::JPY;
            p.transactions[0].amount = Money::from_minor(100, Currency::JPY);
        }),
        ("no payment id", |s| s.order.psp_payment_id = None),
    ];
    for mode in [Standard, Expert] {
        for (what, spoil) in cases {
            let mut s = S::new(PM::Card, mode, LINES);
            spoil(&mut s);
            let d = s.decide();
            assert_eq!(
                purposes(&d),
                [P::ReleaseLocked, P::Problem],
                "{what} {mode:?}"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [ErpWrite::SetShippingLock, ErpWrite::Release]
            );
            assert_eq!(
                flags(&d),
                [(Severity::Error, "authorization_check")],
                "{what}"
            );
            no_money(&d);
        }
    }
}

#[test]
fn spec_3_1_4_failed_capture_before_release_releases_with_lock() {
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Failed);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::ReleaseLocked, P::Problem, P::Problem]);
    assert_eq!(
        writes(&d.plans[0]),
        [ErpWrite::SetShippingLock, ErpWrite::Release]
    );
    let codes: Vec<_> = d.errors().map(|f| f.code.as_str()).collect();
    assert_eq!(
        codes,
        ["authorization_check", "op_failed:capture_order@order:1001"]
    );
    no_money(&d);
}

#[test]
fn spec_3_1_5_manual_orders_are_ignored() {
    for mode in [Standard, Expert] {
        for status in [OrderStatus::Hold, OrderStatus::Open, OrderStatus::Closed] {
            for pid in [None, Some(String::new())] {
                let mut s = S::new(PM::Card, mode, LINES);
                s.order.shop_order_no = "P1001".into();
                s.order.psp_payment_id = pid;
                s.order.status = status;
                s.cancel(&["L3"], STO);
                s.credit("C1", None, "5.00");
                assert_eq!(s.decide(), Decision::default(), "{mode:?} {status:?}");
                s.psp = None;
                assert_eq!(s.decide(), Decision::default());
                // even a failed operation in its ledger raises nothing
                let mut op = Operation::new(
                    &key(),
                    Plan {
                        doc_kind: DocKind::Order,
                        doc_id: "1001".into(),
                        purpose: P::Release,
                        psp: None,
                        erp: vec![],
                    },
                    now(),
                );
                op.status = OpStatus::Failed;
                s.ledger.push(op);
                assert_eq!(s.decide(), Decision::default());
            }
        }
    }
    // "P" + a different number is not a manual order: no payment id is an error
    let mut s = S::new(PM::Card, Expert, LINES);
    s.order.shop_order_no = "P9999".into();
    s.order.psp_payment_id = None;
    assert_eq!(
        flags(&s.decide()),
        [(Severity::Error, "authorization_check")]
    );
}

#[test]
fn spec_3_1_unreadable_psp_payment_is_a_hint_and_decides_nothing() {
    let mut s = S::new(PM::Card, Standard, LINES);
    s.psp = None;
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "psp_unavailable")]);
}

// ----------------------------------------------------------------------------- §3.2 prepayment

#[test]
fn spec_3_2_prepayment_before_receipt_released_with_lock_and_transfer_details() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::ReleasePrepayment]);
    assert_eq!(
        writes(&d.plans[0]),
        [
            ErpWrite::TransferDetails { details: bank() },
            ErpWrite::SetShippingLock,
            ErpWrite::Release
        ]
    );
    assert!(d.flags.is_empty());
    no_money(&d);
    s.insert(&d);
    s.complete_all();
    assert!(s.order.shipping_lock && s.order.status == OrderStatus::Open);
    assert_eq!(
        s.decide_any_mode(),
        Decision::default(),
        "the lock stays until the money arrives"
    );
}

#[test]
fn spec_3_2_prepayment_receipt_clears_the_lock() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("100.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::ClearLock]);
    assert_eq!(writes(&d.plans[0]), [ErpWrite::ClearShippingLock]);
    no_money(&d);
    s.insert(&d);
    s.complete_all();
    assert!(!s.order.shipping_lock);
    assert_eq!(s.decide_any_mode(), Decision::default());
}

#[test]
fn spec_3_2_prepayment_receipt_while_the_lock_is_being_set_clears_it_afterwards() {
    let mut s = S::new(PM::Prepayment, Expert, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::ReleasePrepayment, OpStatus::Running);
    s.order.status = OrderStatus::Open; // release written, lock not yet
    s.receive("100.00");
    assert_eq!(s.decide(), Decision::default());
    s.complete(P::ReleasePrepayment);
    assert_eq!(purposes(&s.decide()), [P::ClearLock]);
}

#[test]
fn spec_3_2_prepayment_receipt_before_import_is_applied_on_import() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    s.receive("100.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::Release]);
    assert_eq!(
        writes(&d.plans[0]),
        [ErpWrite::Release],
        "no lock, no transfer details"
    );
    s.insert(&d);
    s.complete_all();
    assert_eq!(s.decide_any_mode(), Decision::default(), "no lock to clear");
    assert!(!s.order.shipping_lock);
}

#[test]
fn spec_3_2_prepayment_partly_received_keeps_the_lock_with_a_hint() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("40.00");
    let d = s.decide_any_mode();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "partly_paid")]);
    s.receive("60.00");
    assert_eq!(purposes(&s.decide_any_mode()), [P::ClearLock]);
}

#[test]
fn spec_3_2_prepayment_booking_only_when_received_and_closed() {
    for received in [false, true] {
        for status in [OrderStatus::Open, OrderStatus::Closed] {
            let mut s = S::new(PM::Prepayment, Standard, LINES).released();
            if received {
                s.receive("100.00");
                s.settle();
            }
            s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
            s.order.status = status;
            let d = s.decide_any_mode();
            let what = format!("received {received}, {status:?}");
            match (received, status) {
                (true, OrderStatus::Closed) => {
                    assert_eq!(purposes(&d), [P::BookInvoice], "{what}");
                    assert_eq!(writes(&d.plans[0]), [mark("R1", eur("100.00"))]);
                    assert!(d.flags.is_empty());
                }
                (true, _) => assert_eq!(d, Decision::default(), "{what}"),
                (false, _) => {
                    // shipped before receipt: no booking, manual work flagged
                    assert_eq!(
                        flags(&d),
                        [(Severity::Error, "shipped_before_receipt:R1")],
                        "{what}"
                    );
                    assert_eq!(purposes(&d), [P::Problem]);
                }
            }
            no_money(&d);
        }
    }
}

/// Found by the fault simulation (`faults --seed 42 --only 2875`): the PSP payment is for less
/// than the order; the customer pays what the PSP asked, the order ships and closes. Booking the
/// invoice would show more received than arrived: flag it instead.
#[test]
fn spec_3_2_prepayment_invoices_above_the_money_received_are_not_booked() {
    let mut s = S::new(PM::Prepayment, Standard, LINES);
    s.pay().transactions[0].amount = eur("90.00");
    let mut s = s.released();
    s.receive("90.00");
    s.settle();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    s.order.status = OrderStatus::Closed;
    let d = s.decide_any_mode();
    assert!(
        !purposes(&d).contains(&P::BookInvoice),
        "booked more than received: {d:?}"
    );
    assert!(
        flags(&d).contains(&(Severity::Error, "invoices_exceed_received")),
        "{:?}",
        d.flags
    );
    no_money(&d);
    // What arrived is booked when the invoice matches it (the operator corrected the invoice).
    s.order.invoices[0].amount = eur("90.00");
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::BookInvoice]);
    assert_eq!(writes(&d.plans[0]), [mark("R1", eur("90.00"))]);
}

#[test]
fn spec_3_2_prepayment_shipped_before_receipt_is_never_booked_automatically() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(flags(&d), [(Severity::Error, "shipped_before_receipt:R1")]);
    assert_eq!(s.decide().plans, [], "the error comment is written once");
    s.receive("100.00");
    let d = s.decide();
    // The lock is cleared, but the invoice is the operator's to book (they were told so).
    assert_eq!(purposes(&d), [P::ClearLock]);
    assert_eq!(flags(&d), [(Severity::Error, "shipped_before_receipt:R1")]);
}

// ----------------------------------------------------------------------------- §3.3 capture

#[test]
fn spec_3_3_expert_capture_marks_the_invoice_captured_with_the_invoice_event_in_one_write() {
    // the invoice includes freight (50.00 goods + 4.95 freight): that is the capture amount
    let mut s = S::new(
        PM::Card,
        Expert,
        &[("L1", "50.00"), ("FREIGHT", "4.95"), ("L2", "45.05")],
    )
    .released();
    s.invoice("R1", "54.95", &["L1", "FREIGHT"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    let p = &d.plans[0];
    assert_eq!((p.doc_kind, p.doc_id.as_str()), (DocKind::Invoice, "R1"));
    assert_eq!(p.psp, capture(eur("54.95")));
    assert_eq!(
        writes(p),
        [mark("R1", eur("54.95"))],
        "no manual booking for the same money"
    );
    assert!(d.flags.is_empty());
}

#[test]
fn spec_3_3_standard_books_invoices_only_after_the_capture() {
    // released without capture (the capture before release failed: locked release)
    let mut s = S::new(PM::Card, Standard, LINES);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureOrder, OpStatus::Failed);
    s.settle();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    assert!(
        !purposes(&d).contains(&P::BookInvoice),
        "nothing was captured: no booking"
    );
    no_money(&d);
}

#[test]
fn spec_3_3_rounding_difference_against_the_invoice_is_absorbed_and_noted() {
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].amount = eur("99.99");
    let mut s = s.released();
    s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(
        d.plans[0].psp,
        capture(eur("99.99")),
        "capped at the open authorization"
    );
    assert_eq!(
        writes(&d.plans[0]),
        [mark("R1", eur("100.00"))],
        "the invoice is paid in the ERP"
    );
    assert_eq!(d.notes.len(), 1);
    assert!(
        d.notes[0].contains("R1") && d.notes[0].contains("0.01"),
        "{:?}",
        d.notes
    );
}

#[test]
fn spec_3_3_invoice_exceeding_the_open_authorization_is_an_error() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.settle();
    s.invoice("R2", "40.03", &["L2", "L3"]);
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Error, "capture_exceeds:R2")]);
    assert_eq!(purposes(&d), [P::Problem]);
    // within the tolerance: capped and noted
    s.order.invoices[1].amount = eur("40.02");
    let d = s.decide();
    assert_eq!(d.plans[0].psp, capture(eur("40.00")));
    assert!(d.flags.is_empty());
}

#[test]
fn spec_3_3_invoice_waits_while_another_capture_is_in_progress() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.invoice("R2", "45.00", &["L2", "L3"]); // over the rest only once R1 is through
    let d = s.decide();
    assert_eq!(d, Decision::default(), "waits silently for R1");
    s.complete_all();
    assert_eq!(
        flags(&s.decide()),
        [(Severity::Error, "capture_exceeds:R2")]
    );
}

#[test]
fn spec_3_3_failed_capture_is_flagged_with_one_comment() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.set_status(P::CaptureInvoice, OpStatus::Failed);
    let d = s.decide();
    assert_eq!(
        flags(&d),
        [(Severity::Error, "op_failed:capture_invoice@invoice:R1")]
    );
    assert!(d.flags[0].message.contains("declined"));
    assert_eq!(purposes(&d), [P::Problem]);
    let ErpWrite::Comment { text } = &d.plans[0].erp[0] else {
        panic!("comment expected")
    };
    assert!(text.contains("ERROR"), "{text}");
    s.insert(&d);
    let again = s.decide();
    assert_eq!(again.plans, [], "one comment per problem");
    assert_eq!(
        flags(&again),
        [(Severity::Error, "op_failed:capture_invoice@invoice:R1")],
        "stays an error"
    );
}

#[test]
fn spec_3_3_paylater_charges_each_invoice_in_any_mode() {
    for method in [
        PM::PaylaterInvoice,
        PM::InvoicePaylater,
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::Release], "{method:?}");
        s.insert(&d);
        s.complete_all();
        for (inv, amount, lines) in [
            ("R1", "30.00", &["L2"][..]),
            ("R2", "70.00", &["L1", "L3"][..]),
        ] {
            s.invoice(inv, amount, lines);
            let d = s.decide_any_mode();
            assert_eq!(purposes(&d), [P::CaptureInvoice], "{method:?} {inv}");
            assert_eq!(d.plans[0].doc_id, inv);
            assert_eq!(
                d.plans[0].psp,
                capture(eur(amount)),
                "the charge starts the payment term"
            );
            assert_eq!(
                writes(&d.plans[0]),
                [mark(inv, eur(amount))],
                "booked on the charge"
            );
            s.insert(&d);
            s.complete_all();
        }
        assert_eq!(s.decide_any_mode(), Decision::default());
    }
}

#[test]
fn spec_3_3_invoice_secured_reports_the_shipment_and_legacy_invoices_book_when_closed() {
    for method in [PM::InvoiceSecured, PM::Invoice] {
        let mut s = S::new(method, Standard, LINES);
        let d = s.decide_any_mode();
        assert_eq!(
            purposes(&d),
            [P::Release],
            "{method:?}: pending initial charge is fine"
        );
        s.insert(&d);
        s.complete_all();
        s.invoice("R1", "100.00", &["L1", "L2", "L3"]);
        let d = s.decide_any_mode();
        if method == PM::InvoiceSecured {
            assert_eq!(purposes(&d), [P::Shipment]);
            assert_eq!(
                d.plans[0].psp,
                Some(PspCall::Shipment {
                    invoice_id: "R1".into()
                })
            );
        } else {
            assert_eq!(d, Decision::default());
        }
        s.insert(&d);
        s.complete_all();
        s.order.status = OrderStatus::Closed;
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::BookInvoice]);
        assert_eq!(writes(&d.plans[0]), [mark("R1", eur("100.00"))]);
        no_money(&d);
    }
}

#[test]
fn spec_3_3_zero_and_three_decimal_currencies() {
    for (cur, lines, first, rest, tol_ok, tol_bad) in [
        (
            Currency::JPY,
            [("L1", "6000"), ("L2", "4000")],
            "6000",
            "4000",
            "10002",
            "10003",
        ),
        (
            Currency::KWD,
            [("L1", "12.345"), ("L2", "7.655")],
            "12.345",
            "7.655",
            "20.002",
            "20.003",
        ),
    ] {
        let m = |s: &str| Money::parse(s, cur).unwrap();
        // standard: the whole amount, exactly
        let s = S::in_currency(PM::Card, Standard, cur, &lines);
        assert_eq!(
            s.decide().plans[0].psp,
            capture(m(if cur == Currency::JPY {
                "10000"
            } else {
                "20.000"
            }))
        );
        // expert: per invoice, exactly
        let mut s = S::in_currency(PM::Card, Expert, cur, &lines).released();
        s.invoice("R1", first, &["L1"]);
        let d = s.step();
        assert_eq!(d.plans[0].psp, capture(m(first)), "{cur}");
        assert_eq!(
            writes(&d.plans[0]),
            [ErpWrite::MarkInvoiceCaptured {
                invoice_id: "R1".into(),
                event_code: INVOICE_EVENT.into(),
                amount: m(first)
            }]
        );
        s.cancel(&["L2"], STO);
        s.order.status = OrderStatus::Closed;
        assert_eq!(s.step().plans[0].psp, reverse(m(rest)));
        s.credit("C1", Some("R1"), first);
        let d = s.decide();
        assert_eq!(d.plans[0].psp, refund(m(first), RefundReason::Return));
        let neg = Money::zero(cur).checked_sub(m(first)).unwrap();
        assert_eq!(
            writes(&d.plans[0]),
            [ErpWrite::ManualBooking {
                amount: neg,
                event_code: RETURN_EVENT.into(),
                document: "C1".into()
            }]
        );
        // the tolerance counts minor units of the currency (2 = ¥2 / 0.002 KWD)
        let mut s = S::in_currency(PM::Card, Expert, cur, &lines);
        s.pay().transactions[0].amount = m(tol_ok);
        assert_eq!(purposes(&s.decide()), [P::Release], "{cur}");
        s.pay().transactions[0].amount = m(tol_bad);
        assert_eq!(
            purposes(&s.decide()),
            [P::ReleaseLocked, P::Problem],
            "{cur}"
        );
    }
}

// ----------------------------------------------------------------------------- §3.4 cancellation

#[test]
fn spec_3_4_whole_order_cancelled_per_mode() {
    // released (standard: captured), then every line STO / NLB
    for (mode, purpose, call) in [
        (
            Standard,
            P::RefundOrder,
            refund(eur("100.00"), RefundReason::Cancel),
        ),
        (Expert, P::CancelOrder, reverse(eur("100.00"))),
    ] {
        let mut s = S::new(PM::Card, mode, LINES).released();
        s.cancel(&["L1", "L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.step();
        assert_eq!(purposes(&d), [purpose], "{mode:?}");
        assert_eq!(d.plans[0].psp, call);
        assert_eq!(s.decide(), Decision::default(), "sent once");
        let pos = s.psp.as_ref().unwrap().position().unwrap();
        assert!(pos.remaining().unwrap().is_zero() && pos.refundable().unwrap().is_zero());
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_on_hold_reverses_without_capturing_first() {
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide();
        assert_eq!(purposes(&d), [P::CancelOrder], "{mode:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_prepayment_cancels_before_receipt_and_refunds_after() {
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelOrder]);
    assert_eq!(d.plans[0].psp, reverse(eur("100.00")));

    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.cancel(&["L1", "L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::RefundOrder]);
    assert_eq!(d.plans[0].psp, refund(eur("100.00"), RefundReason::Cancel));
}

#[test]
fn spec_3_4_whole_order_cancelled_prepayment_partly_received_returns_everything() {
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.receive("40.00");
    s.cancel(&["L1", "L2", "L3"], STO);
    let mut calls = vec![];
    for _ in 0..4 {
        let d = s.step();
        calls.extend(
            d.plans
                .iter()
                .filter_map(|p| p.psp.clone().map(|c| (p.purpose, c))),
        );
    }
    calls.sort_by_key(|(p, _)| *p == P::RefundOrder);
    assert_eq!(
        calls,
        [
            (P::CancelOrder, reverse(eur("60.00")).unwrap()),
            (
                P::RefundOrder,
                refund(eur("40.00"), RefundReason::Cancel).unwrap()
            )
        ],
        "what is still due is cancelled, what was received is refunded"
    );
}

#[test]
fn spec_3_4_whole_order_cancelled_paylater_cancels_before_the_term_and_nothing_after() {
    for method in [
        PM::PaylaterInvoice,
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelOrder], "{method:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
        // after a capture (the term started): nothing, the remainder expires
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.settle();
        s.cancel(&["L1", "L2", "L3"], STO);
        assert_eq!(s.decide_any_mode(), Decision::default(), "{method:?}");
    }
}

#[test]
fn spec_3_4_whole_order_cancelled_charged_in_shop_refunds_and_legacy_invoice_cancels() {
    let mut s = S::new(PM::Sofort, Standard, LINES).released();
    s.cancel(&["L1", "L2", "L3"], NLB);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::RefundOrder]);
    assert_eq!(d.plans[0].psp, refund(eur("100.00"), RefundReason::Cancel));

    for method in [PM::Invoice, PM::InvoiceSecured] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L1", "L2", "L3"], STO);
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelOrder], "{method:?}");
        assert_eq!(d.plans[0].psp, reverse(eur("100.00")));
    }
}

#[test]
fn spec_3_4_lines_cancelled_standard_refunded_once_closed() {
    for method in [PM::Card, PM::Sofort] {
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.cancel(&["L2"], STO);
        s.cancel(&["L3"], NLB);
        let d = s.step();
        assert_eq!(
            purposes(&d),
            [P::BookInvoice],
            "{method:?}: not before CLOSED"
        );
        s.order.status = OrderStatus::Closed;
        let d = s.step();
        assert_eq!(purposes(&d), [P::RefundLine, P::RefundLine]);
        assert_eq!(
            (d.plans[0].doc_kind, d.plans[0].doc_id.as_str()),
            (DocKind::Line, "L2")
        );
        assert_eq!(d.plans[0].psp, refund(eur("30.00"), RefundReason::Cancel));
        assert_eq!(d.plans[1].psp, refund(eur("10.00"), RefundReason::Cancel));
        assert_eq!(s.decide(), Decision::default(), "refunded once");
    }
}

#[test]
fn spec_3_4_lines_cancelled_expert_sends_nothing_but_closes_after_the_last_delivery() {
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.cancel(&["L2"], STO);
    assert_eq!(
        s.decide(),
        Decision::default(),
        "no refund, no reversal per line"
    );
    s.invoice("R1", "60.00", &["L1"]);
    s.step();
    s.invoice("R2", "10.00", &["L3"]);
    s.step();
    assert_eq!(
        s.decide(),
        Decision::default(),
        "not before the order is CLOSED"
    );
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(purposes(&d), [P::ClosePayment]);
    assert_eq!(d.plans[0].psp, reverse(eur("30.00")));
}

#[test]
fn spec_3_4_lines_cancelled_prepayment_aggregated_once_closed_or_received() {
    // not received: aggregated when CLOSED, reverses (part of) the amount due
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.cancel(&["L2"], STO);
    s.cancel(&["L3"], NLB);
    assert_eq!(
        s.decide_any_mode(),
        Decision::default(),
        "OPEN and nothing received: wait"
    );
    s.order.status = OrderStatus::Closed;
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(
        (d.plans[0].doc_kind, d.plans[0].doc_id.as_str()),
        (DocKind::Line, "L2+L3")
    );
    assert_eq!(d.plans[0].psp, reverse(eur("40.00")));
    s.insert(&d);
    s.complete_all();
    // the customer now owes 60.00; the receipt clears the lock
    s.receive("60.00");
    assert_eq!(purposes(&s.decide_any_mode()), [P::ClearLock]);

    // received: aggregated at once (order still OPEN), refunded
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.cancel(&["L2", "L3"], STO);
    let d = s.decide_any_mode();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(d.plans[0].doc_id, "L2+L3");
    assert_eq!(d.plans[0].psp, refund(eur("40.00"), RefundReason::Cancel));
}

#[test]
fn spec_3_4_later_cancelled_lines_form_a_new_aggregate_and_are_never_resent() {
    let mut s = S::new(
        PM::Invoice,
        Expert,
        &[
            ("L1", "50.00"),
            ("L2", "30.00"),
            ("L3", "15.00"),
            ("L4", "5.00"),
        ],
    )
    .released();
    s.cancel(&["L2", "L3"], STO);
    s.order.status = OrderStatus::Closed;
    let d = s.step();
    assert_eq!(
        (purposes(&d), d.plans[0].doc_id.as_str()),
        (vec![P::CancelLines], "L2+L3")
    );
    assert_eq!(s.decide(), Decision::default());
    s.cancel(&["L4"], NLB);
    let d = s.step();
    assert_eq!(purposes(&d), [P::CancelLines]);
    assert_eq!(
        (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
        ("L4", reverse(eur("5.00")))
    );
    assert_eq!(s.decide(), Decision::default());
}

#[test]
fn spec_3_4_lines_cancelled_legacy_invoice_aggregated_once_closed() {
    for method in [PM::Invoice, PM::InvoiceSecured] {
        let mut s = S::new(method, Standard, LINES).released();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(s.decide_any_mode(), Decision::default(), "{method:?}");
        s.order.status = OrderStatus::Closed;
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelLines]);
        assert_eq!(
            (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
            ("L2+L3", reverse(eur("40.00")))
        );
    }
}

#[test]
fn spec_3_4_lines_cancelled_paylater_invoice_aggregated_once_the_term_started() {
    for method in [PM::PaylaterInvoice, PM::InvoicePaylater] {
        let mut s = S::new(method, Expert, LINES).released();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(
            s.decide_any_mode(),
            Decision::default(),
            "{method:?}: term not started"
        );
        s.invoice("R1", "60.00", &["L1"]);
        let d = s.decide_any_mode();
        assert_eq!(
            purposes(&d),
            [P::CaptureInvoice],
            "not in the same step as the charge"
        );
        s.insert(&d);
        s.complete_all();
        let d = s.decide_any_mode();
        assert_eq!(purposes(&d), [P::CancelLines]);
        assert_eq!(
            (d.plans[0].doc_id.as_str(), d.plans[0].psp.clone()),
            ("L2+L3", reverse(eur("40.00")))
        );
        // or once CLOSED without any charge
        let mut s = S::new(method, Expert, LINES).released();
        s.cancel(&["L3"], NLB);
        s.order.status = OrderStatus::Closed;
        assert_eq!(s.decide_any_mode().plans[0].psp, reverse(eur("10.00")));
    }
}

#[test]
fn spec_3_4_lines_cancelled_paylater_debit_sends_nothing() {
    for method in [
        PM::PaylaterDirectDebit,
        PM::PaylaterInstallment,
        PM::SepaDirectDebitSecured,
    ] {
        let mut s = S::new(method, Standard, LINES).released();
        s.invoice("R1", "60.00", &["L1"]);
        s.settle();
        s.cancel(&["L2", "L3"], STO);
        assert_eq!(s.decide_any_mode(), Decision::default(), "{method:?}");
        s.order.status = OrderStatus::Closed;
        assert_eq!(
            s.decide_any_mode(),
            Decision::default(),
            "{method:?}: the remainder expires"
        );
    }
}

#[test]
fn spec_3_4_returns_are_sent_singly_next_to_the_aggregate() {
    let mut s = S::new(PM::Prepayment, Standard, LINES).released();
    s.receive("100.00");
    s.settle();
    s.invoice("R1", "60.00", &["L1"]);
    s.cancel(&["L2", "L3"], STO);
    s.order.status = OrderStatus::Closed;
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide_any_mode();
    assert_eq!(
        purposes(&d),
        [P::BookInvoice, P::CancelLines, P::RefundCredit]
    );
    assert_eq!(d.plans[1].psp, refund(eur("40.00"), RefundReason::Cancel));
    assert_eq!(d.plans[2].psp, refund(eur("20.00"), RefundReason::Return));
    assert_eq!(d.plans[2].doc_id, "C1");
}

// ----------------------------------------------------------------------------- §3.5 returns

/// An order of each family with invoice R1 (60.00) captured / booked through paybridge.
fn invoiced(method: PM, mode: Mode) -> S {
    let mut s = S::new(method, mode, LINES);
    if method == PM::Prepayment {
        s.receive("100.00");
    }
    let mut s = s.released();
    s.invoice("R1", "60.00", &["L1"]);
    if matches!(method, PM::Prepayment | PM::Invoice) {
        s.order.status = OrderStatus::Closed;
    }
    s.settle();
    if method == PM::Invoice {
        s.receive("100.00");
    }
    assert!(s.order.invoices[0].captured, "{method:?} {mode:?}");
    s
}

#[test]
fn spec_3_5_credit_note_refunded_with_reason_return_and_negative_booking() {
    let setups = [
        (PM::Card, Standard),
        (PM::Card, Expert),
        (PM::ApplePay, Expert),
        (PM::Sofort, Expert),
        (PM::Prepayment, Standard),
        (PM::Invoice, Standard),
        (PM::PaylaterInvoice, Standard),
        (PM::PaylaterDirectDebit, Expert),
    ];
    for (method, mode) in setups {
        let mut s = invoiced(method, mode);
        s.credit("C1", Some("R1"), "20.00");
        let d = s.decide();
        assert_eq!(purposes(&d), [P::RefundCredit], "{method:?} {mode:?}");
        let p = &d.plans[0];
        assert_eq!((p.doc_kind, p.doc_id.as_str()), (DocKind::CreditNote, "C1"));
        assert_eq!(p.psp, refund(eur("20.00"), RefundReason::Return));
        assert_eq!(
            writes(p),
            [ErpWrite::ManualBooking {
                amount: eur("-20.00"),
                event_code: RETURN_EVENT.into(),
                document: "C1".into()
            }]
        );
        assert!(d.flags.is_empty());
        s.insert(&d);
        s.complete_all();
        assert_eq!(s.decide(), Decision::default(), "{method:?}: refunded once");
        // an unlinked goodwill credit is refunded too
        s.credit("C2", None, "5.00");
        assert_eq!(
            s.decide().plans[0].psp,
            refund(eur("5.00"), RefundReason::Return)
        );
    }
}

#[test]
fn spec_3_5_settled_credit_note_is_an_error_and_not_refunded() {
    for mode in [Standard, Expert] {
        let mut s = invoiced(PM::Card, mode);
        s.credit("C1", Some("R1"), "20.00");
        s.order.credit_notes[0].settled = true;
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [(Severity::Error, "credit_settled:C1")],
            "{mode:?}"
        );
        assert_eq!(purposes(&d), [P::Problem]);
    }
}

#[test]
fn spec_3_5_return_against_an_invoice_captured_before_paybridge_is_an_error() {
    for mode in [Standard, Expert] {
        let mut s = S::new(PM::Card, mode, LINES);
        s.order.status = OrderStatus::Open;
        // captured by hand in the PSP portal and marked paid in the ERP before paybridge ran
        s.pay()
            .transactions
            .push(tx(TxKind::Charge, TxStatus::Success, eur("60.00")));
        s.invoice("R1", "60.00", &["L1"]);
        s.order.invoices[0].captured = true;
        s.credit("C1", Some("R1"), "20.00");
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [(Severity::Error, "foreign_capture:C1")],
            "{mode:?}"
        );
        assert_eq!(purposes(&d), [P::Problem]);
        no_money(&d);
    }
}

#[test]
fn spec_3_5_credit_note_exceeding_the_captured_amount_is_an_error() {
    for (mode, amount) in [(Standard, "100.01"), (Expert, "60.01")] {
        let mut s = invoiced(PM::Card, mode);
        s.credit("C1", Some("R1"), amount);
        let d = s.decide();
        assert_eq!(
            flags(&d),
            [(Severity::Error, "refund_exceeds:C1")],
            "{mode:?}"
        );
        assert_eq!(purposes(&d), [P::Problem]);
        no_money(&d);
    }
}

#[test]
fn spec_3_5_credit_note_waits_for_money_still_on_its_way() {
    // expert: its invoice's capture is in progress
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    let d = s.decide();
    s.insert(&d);
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "refund_waits:C1")]);
    s.complete_all();
    assert_eq!(purposes(&s.decide()), [P::RefundCredit]);
    // prepayment: the customer has not paid yet
    let mut s = S::new(PM::Prepayment, Expert, LINES).released();
    s.credit("C1", None, "20.00");
    let d = s.decide_any_mode();
    assert!(d.plans.is_empty());
    assert_eq!(flags(&d), [(Severity::Hint, "refund_waits:C1")]);
}

#[test]
fn spec_3_5_credit_note_arriving_with_its_invoice_waits_without_error() {
    // Invoice and credit note appear in the same poll (e.g. after the ERP quiet hours): the
    // capture planned in this very decision is money on its way, not a reason for an error mail.
    let mut s = S::new(PM::Card, Expert, LINES).released();
    s.invoice("R1", "60.00", &["L1"]);
    s.credit("C1", Some("R1"), "20.00");
    let d = s.decide();
    assert_eq!(purposes(&d), [P::CaptureInvoice]);
    assert_eq!(d.errors().count(), 0, "{:?}", d.flags);
    s.insert(&d);
    s.complete_all();
    assert_eq!(purposes(&s.decide()), [P::RefundCredit]);
}

// ----------------------------------------------------------------------------- §3.5a families

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

// ----------------------------------------------------------------------------- §4 visibility

/// Every decision of a handful of complete order lives, with their errors.
fn all_decisions() -> Vec<Decision> {
    let mut out = vec![];
    for m in ALL_METHODS {
        for mode in [Standard, Expert] {
            let mut s = S::new(m, mode, LINES);
            let mut round = |s: &mut S| {
                let d = s.decide();
                s.insert(&d);
                s.complete_all();
                out.push(d);
            };
            round(&mut s);
            round(&mut s);
            s.receive("100.00");
            round(&mut s);
            s.invoice("R1", "60.00", &["L1"]);
            round(&mut s);
            s.cancel(&["L2"], STO);
            s.order.status = OrderStatus::Closed;
            round(&mut s);
            round(&mut s);
            s.credit("C1", Some("R1"), "10.00");
            s.credit("C2", Some("R1"), "500.00");
            round(&mut s);
            let mut bad = S::new(m, mode, LINES);
            bad.pay().transactions[0].amount = eur("1.00");
            round(&mut bad);
        }
    }
    out
}

#[test]
fn spec_4_every_action_leaves_one_erp_comment() {
    let decisions = all_decisions();
    let plans: Vec<&Plan> = decisions.iter().flat_map(|d| &d.plans).collect();
    assert!(plans.len() > 100, "the scenarios exercise the engine");
    for p in plans {
        let comments: Vec<&str> = p
            .erp
            .iter()
            .filter_map(|w| match w {
                ErpWrite::Comment { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(comments.len(), 1, "{p:#?}");
        assert!(
            matches!(p.erp.last(), Some(ErpWrite::Comment { .. })),
            "comment after the action: {p:#?}"
        );
        assert!(
            comments[0].starts_with("paybridge 2023-11-14 22:13 UTC: "),
            "what and when: {}",
            comments[0]
        );
    }
}

#[test]
fn spec_4_errors_get_a_flag_and_exactly_one_comment() {
    for d in all_decisions() {
        let problems: Vec<&Plan> = d.plans.iter().filter(|p| p.purpose == P::Problem).collect();
        // Problem plans are only emitted the first time; never more than the errors
        assert!(problems.len() <= d.errors().count(), "{d:#?}");
        for p in problems {
            let code = p
                .doc_id
                .strip_prefix("1001:")
                .expect("order-scoped problem id");
            assert!(d.errors().any(|f| f.code == code), "{code}");
            assert_eq!(p.psp, None);
            assert!(
                matches!(&p.erp[..], [ErpWrite::Comment { text }] if text.contains("ERROR")),
                "{p:#?}"
            );
        }
        let mut codes: Vec<&str> = d.flags.iter().map(|f| f.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), d.flags.len(), "one flag per code");
    }
    // once written, the comment is not repeated while the error stays
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].amount = eur("1.00");
    let d = s.step();
    assert_eq!(
        d.plans.iter().filter(|p| p.purpose == P::Problem).count(),
        1
    );
    assert_eq!(s.order.status, OrderStatus::Open);
    let again = s.decide();
    assert_eq!(again.plans, [], "no second comment");
    assert_eq!(
        flags(&again),
        [(Severity::Error, "authorization_check")],
        "stays an error until solved"
    );
}

#[test]
fn spec_4_hints_write_no_comment() {
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].status = TxStatus::Pending;
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Hint, "pending")]);
    assert!(d.plans.is_empty());
}
