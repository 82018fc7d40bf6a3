//! Unit tests of [`decide`], one file per section of behaviour.md (§2–§3.6, §4) and one for issue
//! 12's seed-000 items across sections (`seed000.rs`, §3.1–§3.9); this file
//! holds the builders they share.
//!
//! Each test feeds the engine facts (ERP order, PSP payment, ledger, config) and asserts the exact
//! outcome: purposes, PSP calls to the cent, ERP writes, flags and notes. Sequences are driven the
//! way the runtime drives them: a decision's plans become ledger operations
//! (`Operation::new`), are run to `Done` (PSP transaction carrying our reference appended to the
//! PSP view, ERP writes applied to the order) and the engine is asked again.

use super::*;
use crate::config::{PspAccount, PspKind, Secret, SecretRef};
use crate::erp::memory::line;
use crate::ledger::psp_reference;
use crate::ledger::{OpStatus, PspCall, RefundReason};
use crate::model::{
    BankDetails, CreditNote, Invoice, LineStatus, OrderLine, PaymentMethod, PspTransaction,
};
use crate::model::{PaymentState, TxKind, TxStatus};
use crate::money::Currency;
use crate::money::Money;
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
        erp_method: "PSP".into(),
        psp: PspKind::Memory,
        active: true,
        mode,
        invoice_event: INVOICE_EVENT.into(),
        return_event: RETURN_EVENT.into(),
        rounding_tolerance: 2,
        authorization_validity_days: None,
        pending_error_after_hours: 24,
        account: PspAccount {
            public_key: "s-pub-test".into(),
            private_key: SecretRef::Plain(Secret::new("s-priv-test")),
            api_host: None,
            extra: Default::default(),
        },
    }
}

fn bank() -> BankDetails {
    BankDetails {
        holder: "Example Payments GmbH".into(),
        iban: "DE89370400440532013000".into(),
        bic: "COBADEFFXXX".into(),
        descriptor: "4567.1234.5678".into(),
    }
}

fn tx(kind: TxKind, status: TxStatus, amount: Money) -> PspTransaction {
    PspTransaction {
        at: None,
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
        bank_details: matches!(method, PM::Prepayment | PM::Invoice | PM::InvoiceSecured)
            .then(bank),
        totals_only: false,
    }
}

/// One order with its PSP payment, ledger and config: the engine's whole input.
#[derive(Clone)]
struct S {
    order: ErpOrder,
    psp: Option<PspPayment>,
    ledger: Vec<Operation>,
    cfg: MethodConfig,
    /// When paybridge first saw the order (default: [`now`]).
    first_seen: DateTime<Utc>,
    hands_off: Option<DateTime<Utc>>,
    /// The decision's clock (default: [`now`]).
    at: DateTime<Utc>,
}

/// The decision without its recheck time: "nothing to do now" whether or not a later
/// evaluation is asked for (the lifetime tests assert the recheck themselves).
fn idle(d: Decision) -> Decision {
    Decision {
        recheck_at: None,
        ..d
    }
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
                payment_method: "PSP".into(),
                status: OrderStatus::Hold,
                total,
                lines,
                shipping_lock: false,
                invoices: vec![],
                credit_notes: vec![],
                customer_key: None,
            },
            psp: Some(payment(method, kind, status, total)),
            ledger: vec![],
            cfg: config(mode),
            first_seen: now(),
            hands_off: None,
            at: now(),
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
            now: self.at,
            first_seen: self.first_seen,
            hands_off: self.hands_off,
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
        // A payment request moves no money (the customer pays later): its step just ends.
        if let Some(PspCall::RequestPayment { .. }) = &plan.psp {
            self.ledger[i].psp_done = true;
        } else if let Some(call) = &plan.psp {
            let p = self.pay();
            let (kind, amount) = match call {
                PspCall::Capture { amount } => (TxKind::Charge, *amount),
                PspCall::Reverse { amount } => (TxKind::CancelAuthorize, *amount),
                PspCall::Refund { amount, .. } => (TxKind::CancelCharge, *amount),
                PspCall::Shipment { .. } => (TxKind::Shipment, Money::zero(p.currency)),
                PspCall::RequestPayment { .. } => unreachable!("handled above"),
            };
            let id = format!("s-tx-{}", p.transactions.len());
            p.transactions.push(PspTransaction {
                at: None,
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

mod cancellation;
mod capture;
mod comments;
mod credit_note;
mod families;
mod modes;
mod payment_link;
mod prepayment;
mod release;
mod seed000;
