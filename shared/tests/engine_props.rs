//! Property test of the decision engine driven by a minimal, faithful model of the runtime.
//!
//! One order lives through a random sequence of events:
//! - ERP documents: invoices (random amounts ≤ the lines they ship), line cancellations (STO/NLB),
//!   credit notes (≤ what is left to credit on an invoice), HOLD → OPEN (by our release write),
//!   OPEN → CLOSED (once nothing is left to ship);
//! - PSP facts: prepayment transfers (partial or in full), and for every money call we send one
//!   of: done, declined, unknown outcome (applied or not), or a crash after the PSP applied it
//!   (the operation is left `Running` with its in-flight mark, nothing recorded);
//! - duplicate deliveries: the same input decided twice (must decide the same) and the same
//!   plans inserted twice into a ledger map keyed by op id (the store's conditional insert);
//! - reconciliation: an operation whose reference is found at the PSP is marked `psp_done`
//!   instead of being sent again (`app::steps` does the same before every send);
//! - (second property) evaluations racing on older order facts against the current
//!   ledger, as `app::evaluate` can when a job's evaluation reads the stored facts while a poll
//!   plans from newer ones.
//!
//! After every step the money invariants must hold (captured ≤ authorized + tolerance,
//! refunded ≤ captured, reversed ≤ authorized − captured, `ledger::check_position`), no PSP
//! reference carries more than one transaction, each ERP document moves money at most once, and
//! every call the engine planned passes `ledger::check_call` when it is sent (except the one
//! race outside paybridge's control: a customer transfer arriving after a prepayment reversal was
//! planned). At the end the world is driven to rest (all calls succeed, the order is shipped or
//! cancelled and CLOSED, a prepayment is paid) and the engine must reach a fixpoint; when no
//! operation failed and no error is open, the money must add up per family and mode.

use chrono::{DateTime, Duration, Utc};
use paybridge_core::config::{MethodConfig, Mode, PspAccount, PspKind, Secret, SecretRef};
use paybridge_core::engine::{Decision, Input, decide};
use paybridge_core::erp::memory::line;
use paybridge_core::ledger::{
    self, ErpWrite, OpStatus, Operation, OrderKey, PspCall, Purpose, Step,
};
use paybridge_core::model::{
    BankDetails, CreditNote, ErpOrder, Invoice, LineStatus, OrderStatus, PaymentMethod,
    PaymentState, PspPayment, PspTransaction, TxKind, TxStatus,
};
use paybridge_core::money::{Currency, Money};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};

const LEASE_SECS: i64 = 30;
const TICK_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    CardAuthorized,
    CardCharged,
    Prepayment,
    PaylaterInvoice,
    PaylaterDebit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Declined,
    UnknownApplied,
    UnknownNotApplied,
    CrashAfterApply,
}

#[derive(Debug, Clone)]
enum Event {
    /// The engine is asked (poll / webhook / job); `dup`: the delivery comes twice.
    Decide {
        dup: bool,
    },
    /// A worker runs one open operation; its PSP call (if sent) ends with `outcome`.
    Run {
        pick: Index,
        outcome: Outcome,
    },
    /// Resolve unknown outcomes by looking for our reference at the PSP.
    Reconcile,
    /// Ship up to `lines` open lines with one invoice, `discount_pct` below their value.
    Invoice {
        lines: usize,
        discount_pct: i64,
    },
    CancelLine {
        pick: Index,
        nlb: bool,
    },
    Credit {
        pick: Index,
        pct: i64,
    },
    Close,
    /// A prepayment transfer of the amount due (or half of it).
    Receipt {
        partial: bool,
    },
    /// An evaluation that read the order facts `back` steps ago (the stored record, while a
    /// poll already planned from newer facts) but the current ledger and PSP view.
    StaleDecide {
        back: Index,
    },
}

#[derive(Debug, Clone)]
struct Case {
    family: Family,
    mode: Mode,
    currency: Currency,
    tolerance: u32,
    lines: Vec<i64>,
    auth_diff: i64,
    events: Vec<Event>,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Done),
        1 => Just(Outcome::Declined),
        1 => Just(Outcome::UnknownApplied),
        1 => Just(Outcome::UnknownNotApplied),
        1 => Just(Outcome::CrashAfterApply),
    ]
}

fn event(stale: bool) -> impl Strategy<Value = Event> {
    let stale_weight = if stale { 2 } else { 0 };
    prop_oneof![
        stale_weight => any::<Index>().prop_map(|back| Event::StaleDecide { back }),
        4 => any::<bool>().prop_map(|dup| Event::Decide { dup }),
        7 => (any::<Index>(), outcome()).prop_map(|(pick, outcome)| Event::Run { pick, outcome }),
        1 => Just(Event::Reconcile),
        3 => (1usize..=3, prop_oneof![3 => Just(0i64), 1 => 1i64..=30])
            .prop_map(|(lines, discount_pct)| Event::Invoice { lines, discount_pct }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(pick, nlb)| Event::CancelLine { pick, nlb }),
        2 => (any::<Index>(), 1i64..=100).prop_map(|(pick, pct)| Event::Credit { pick, pct }),
        2 => Just(Event::Close),
        1 => any::<bool>().prop_map(|partial| Event::Receipt { partial }),
    ]
}

fn case(stale: bool) -> impl Strategy<Value = Case> {
    // stale evaluations matter most where the engine plans captures before release
    let card_weight = if stale { 6 } else { 2 };
    (
        prop_oneof![
            card_weight => Just(Family::CardAuthorized),
            2 => Just(Family::CardCharged),
            2 => Just(Family::Prepayment),
            2 => Just(Family::PaylaterInvoice),
            2 => Just(Family::PaylaterDebit),
        ],
        prop_oneof![card_weight => Just(Mode::Standard), 2 => Just(Mode::Expert)],
        prop_oneof![
            Just(Currency::EUR),
            Just(Currency::JPY),
            Just(Currency::KWD)
        ],
        0u32..=2,
        prop::collection::vec(1i64..=50_000, 1..=4),
        -2i64..=2,
        prop::collection::vec(event(stale), 0..40),
    )
        .prop_map(
            |(family, mode, currency, tolerance, lines, auth_diff, events)| Case {
                family,
                mode,
                currency,
                tolerance,
                lines,
                auth_diff,
                events,
            },
        )
}

/// The order, its PSP payment and ledger, and the runtime around the engine.
struct World {
    key: OrderKey,
    cfg: MethodConfig,
    family: Family,
    order: ErpOrder,
    psp: PspPayment,
    /// The store: conditional insert by op id.
    ledger: BTreeMap<String, Operation>,
    now: DateTime<Utc>,
    step: usize,
    tx_seq: u64,
    planned_at: BTreeMap<String, usize>,
    last_receipt: Option<usize>,
    /// Ops whose call `check_call` refused at send time (only the receipt race is allowed).
    refused: Vec<String>,
    /// ERP side: MarkInvoiceCaptured per invoice, ManualBooking per credit note.
    marks: BTreeMap<String, usize>,
    bookings: BTreeMap<String, usize>,
    last: Decision,
    /// The order facts as they were before each step.
    history: Vec<ErpOrder>,
}

enum End {
    Finished,
    Failed,
    Pending,
}

impl World {
    fn new(c: &Case) -> World {
        let cur = c.currency;
        let lines: Vec<_> = c
            .lines
            .iter()
            .enumerate()
            .map(|(i, a)| {
                line(
                    &format!("L{}", i + 1),
                    LineStatus::Open,
                    Money::from_minor(*a, cur),
                )
            })
            .collect();
        let total_minor: i64 = c.lines.iter().sum();
        let total = Money::from_minor(total_minor, cur);
        let diff = c
            .auth_diff
            .clamp(-i64::from(c.tolerance), i64::from(c.tolerance));
        let (method, kind, status, amount, state) = match c.family {
            Family::CardAuthorized => (
                PaymentMethod::Card,
                TxKind::Authorize,
                TxStatus::Success,
                Money::from_minor((total_minor + diff).max(1), cur),
                PaymentState::Pending,
            ),
            Family::CardCharged => (
                PaymentMethod::Card,
                TxKind::Charge,
                TxStatus::Success,
                total,
                PaymentState::Completed,
            ),
            Family::Prepayment => (
                PaymentMethod::Prepayment,
                TxKind::Charge,
                TxStatus::Pending,
                total,
                PaymentState::Pending,
            ),
            Family::PaylaterInvoice => (
                PaymentMethod::PaylaterInvoice,
                TxKind::Authorize,
                TxStatus::Success,
                total,
                PaymentState::Pending,
            ),
            Family::PaylaterDebit => (
                PaymentMethod::PaylaterDirectDebit,
                TxKind::Authorize,
                TxStatus::Success,
                total,
                PaymentState::Pending,
            ),
        };
        World {
            key: OrderKey::new("acme", "main", "4711"),
            cfg: MethodConfig {
                erp: "main".into(),
                mandant: "01".into(),
                erp_method: "UNZER".into(),
                psp: PspKind::Unzer,
                active: true,
                mode: c.mode,
                invoice_event: "ZE".into(),
                return_event: "RE".into(),
                rounding_tolerance: c.tolerance,
                authorization_validity_days: None,
                pending_error_after_hours: 24,
                account: PspAccount {
                    public_key: "s-pub-x".into(),
                    private_key: SecretRef::Plain(Secret::new("s-priv-x")),
                    api_host: None,
                    extra: Default::default(),
                },
            },
            family: c.family,
            order: ErpOrder {
                order_id: "4711".into(),
                mandant: "01".into(),
                shop_order_no: "S-4711".into(),
                psp_payment_id: Some("s-pay-9".into()),
                payment_method: "UNZER".into(),
                status: OrderStatus::Hold,
                total,
                lines,
                shipping_lock: false,
                invoices: vec![],
                credit_notes: vec![],
                customer_key: None,
            },
            psp: PspPayment {
                payment_id: "s-pay-9".into(),
                state,
                method,
                currency: cur,
                transactions: vec![PspTransaction {
                    at: None,
                    id: "s-init".into(),
                    kind,
                    status,
                    amount,
                    reference: None,
                }],
                bank_details: (c.family == Family::Prepayment).then(|| BankDetails {
                    holder: "Merchant".into(),
                    iban: "DE89370400440532013000".into(),
                    bic: "COBADEFFXXX".into(),
                    descriptor: "1234.5678".into(),
                }),
                totals_only: false,
            },
            ledger: BTreeMap::new(),
            now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            step: 0,
            tx_seq: 0,
            planned_at: BTreeMap::new(),
            last_receipt: None,
            refused: vec![],
            marks: BTreeMap::new(),
            bookings: BTreeMap::new(),
            last: Decision::default(),
            history: vec![],
        }
    }

    fn money(&self, minor: i64) -> Money {
        Money::from_minor(minor, self.order.total.currency())
    }

    fn minor(m: Money) -> i64 {
        m.to_minor().unwrap()
    }

    fn tick(&mut self) {
        self.step += 1;
        self.now += Duration::seconds(TICK_SECS);
    }

    fn decide(&self) -> Decision {
        let ops: Vec<Operation> = self.ledger.values().cloned().collect();
        decide(&Input {
            key: &self.key,
            order: &self.order,
            psp: Some(&self.psp),
            ledger: &ops,
            config: Some(&self.cfg),
            now: self.now,
            first_seen: self.now,
            hands_off: None,
        })
    }

    fn insert(&mut self, d: &Decision) {
        for p in &d.plans {
            let op = Operation::new(&self.key, p.clone(), self.now);
            if !self.ledger.contains_key(&op.id) {
                self.planned_at.insert(op.id.clone(), self.step);
                self.ledger.insert(op.id.clone(), op);
            }
        }
    }

    /// `app::evaluate`: decide and insert the plans (conditionally).
    fn evaluate(&mut self, dup: bool) -> Result<(), TestCaseError> {
        let d = self.decide();
        prop_assert_eq!(&d, &self.decide(), "decide must be deterministic");
        let mut ids = BTreeSet::new();
        for p in &d.plans {
            let id = p.op_id(&self.key);
            prop_assert!(
                !self.ledger.contains_key(&id),
                "re-planned an existing operation {}",
                id
            );
            prop_assert!(
                ids.insert(id.clone()),
                "two plans with id {} in one decision",
                id
            );
            if let Some(a) = p.psp.as_ref().and_then(PspCall::amount) {
                prop_assert!(a.is_positive(), "non-positive money call {:?}", p);
            }
        }
        for f in &d.flags {
            prop_assert!(
                f.code != "invariant" && f.code != "money",
                "broken money position: {:?}",
                f
            );
        }
        self.insert(&d);
        if dup {
            // the same delivery again: same input, same decision, the insert is a no-op
            let before = self.ledger.clone();
            self.insert(&d);
            prop_assert_eq!(&before, &self.ledger);
        }
        self.last = d;
        Ok(())
    }

    fn psp_apply(&mut self, call: &PspCall, reference: &str) -> String {
        self.tx_seq += 1;
        let id = format!("s-tx-{}", self.tx_seq);
        let (kind, amount) = match call {
            PspCall::Capture { amount } => (TxKind::Charge, *amount),
            PspCall::Reverse { amount } => (TxKind::CancelAuthorize, *amount),
            PspCall::Refund { amount, .. } => (TxKind::CancelCharge, *amount),
            PspCall::Shipment { .. } => (TxKind::Shipment, self.money(0)),
            PspCall::RequestPayment { .. } => {
                unreachable!("the model draws no payment-link orders")
            }
        };
        self.psp.transactions.push(PspTransaction {
            at: None,
            id: id.clone(),
            kind,
            status: TxStatus::Success,
            amount,
            reference: Some(reference.to_string()),
        });
        id
    }

    fn erp_apply(&mut self, w: &ErpWrite) -> Result<(), TestCaseError> {
        match w {
            ErpWrite::Release => {
                if self.order.status == OrderStatus::Hold {
                    self.order.status = OrderStatus::Open;
                }
            }
            ErpWrite::SetShippingLock => self.order.shipping_lock = true,
            ErpWrite::ClearShippingLock => self.order.shipping_lock = false,
            ErpWrite::MarkInvoiceCaptured {
                invoice_id,
                event_code,
                amount,
            } => {
                prop_assert_eq!(event_code, &self.cfg.invoice_event);
                let inv = self
                    .order
                    .invoices
                    .iter_mut()
                    .find(|i| &i.invoice_id == invoice_id);
                let inv = inv.expect("marked invoice exists");
                prop_assert_eq!(*amount, inv.amount);
                inv.captured = true;
                *self.marks.entry(invoice_id.clone()).or_default() += 1;
            }
            ErpWrite::ManualBooking {
                amount,
                event_code,
                document,
            } => {
                prop_assert_eq!(event_code, &self.cfg.return_event);
                prop_assert!(
                    amount.is_negative(),
                    "refund bookings are negative: {:?}",
                    amount
                );
                *self.bookings.entry(document.clone()).or_default() += 1;
            }
            ErpWrite::TransferDetails { .. } | ErpWrite::Comment { .. } => {}
        }
        Ok(())
    }

    /// `app::run_op` + `app::steps`: claim, reconcile, check, send, record, ERP writes, finish.
    fn run_op(&mut self, id: &str, outcome: Outcome) -> Result<(), TestCaseError> {
        let mut op = self.ledger[id].clone();
        if op.claim(self.now, Duration::seconds(LEASE_SECS)).is_err() {
            return Ok(());
        }
        let now = self.now;
        let reference = ledger::psp_reference(&op.id);
        let mut outcome = Some(outcome);
        let end = loop {
            match op.next_step() {
                None => {
                    op.finish(now).unwrap();
                    break End::Finished;
                }
                Some(Step::Psp) => {
                    let call = op.plan.psp.clone().unwrap();
                    if let Some(tx) = self.psp.find_by_reference(&reference) {
                        op.psp_succeeded(tx.id.clone(), now).unwrap();
                        continue;
                    }
                    let pos = self.psp.position().unwrap();
                    if let Err(v) = ledger::check_call(&call, &pos, self.cfg.rounding_tolerance) {
                        let race = self.family == Family::Prepayment
                            && matches!(call, PspCall::Reverse { .. })
                            && self
                                .last_receipt
                                .is_some_and(|r| r >= self.planned_at[&op.id]);
                        prop_assert!(
                            race,
                            "the engine planned {:?} for {} but the invariant refuses it: {}",
                            call,
                            op.id,
                            v
                        );
                        self.refused.push(op.id.clone());
                        op.fail(format!("money invariant: {v}"), now);
                        break End::Failed;
                    }
                    op.begin(Step::Psp, now).unwrap();
                    match outcome.take().unwrap_or(Outcome::Done) {
                        Outcome::Done => {
                            let tx = self.psp_apply(&call, &reference);
                            op.psp_succeeded(tx, now).unwrap();
                        }
                        Outcome::Declined => {
                            op.inflight = None;
                            op.fail("PSP declined".into(), now);
                            break End::Failed;
                        }
                        Outcome::UnknownApplied => {
                            self.psp_apply(&call, &reference);
                            op.retry_at(now + Duration::seconds(10), "outcome unknown".into(), now);
                            break End::Pending;
                        }
                        Outcome::UnknownNotApplied => {
                            op.retry_at(now + Duration::seconds(10), "outcome unknown".into(), now);
                            break End::Pending;
                        }
                        Outcome::CrashAfterApply => {
                            self.psp_apply(&call, &reference);
                            break End::Pending; // left Running with the in-flight mark
                        }
                    }
                }
                Some(step @ Step::Erp { index }) => {
                    op.begin(step, now).unwrap();
                    let w = op.plan.erp[index].clone();
                    self.erp_apply(&w)?;
                    op.erp_succeeded(now).unwrap();
                }
            }
        };
        self.ledger.insert(op.id.clone(), op);
        if matches!(end, End::Finished | End::Failed) {
            self.evaluate(false)?; // follow-ups, like the runtime
        }
        Ok(())
    }

    fn open_ops(&self) -> Vec<String> {
        self.ledger
            .values()
            .filter(|o| !o.status.is_terminal())
            .map(|o| o.id.clone())
            .collect()
    }

    /// Marks `psp_done` every operation whose reference the PSP has (never re-sent).
    fn reconcile(&mut self) {
        for id in self.open_ops() {
            let mut op = self.ledger[&id].clone();
            if op.psp_done || op.plan.psp.is_none() {
                continue;
            }
            let Some(tx) = self.psp.find_by_reference(&ledger::psp_reference(&id)) else {
                continue;
            };
            let tx_id = tx.id.clone();
            if op.claim(self.now, Duration::seconds(LEASE_SECS)).is_ok() {
                op.psp_succeeded(tx_id, self.now).unwrap();
                self.ledger.insert(id, op);
            }
        }
    }

    fn receipt(&mut self, partial: bool) {
        if self.family != Family::Prepayment {
            return;
        }
        let pos = self.psp.position().unwrap();
        let due =
            Self::minor(pos.authorized) - Self::minor(pos.reversed) - Self::minor(pos.charged);
        let amount = if partial { due / 2 } else { due };
        if amount <= 0 {
            return;
        }
        self.tx_seq += 1;
        self.psp.transactions.push(PspTransaction {
            at: None,
            id: format!("s-rcv-{}", self.tx_seq),
            kind: TxKind::Charge,
            status: TxStatus::Success,
            amount: self.money(amount),
            reference: None,
        });
        self.psp.state = if self.psp.received_in_full().unwrap() {
            PaymentState::Completed
        } else {
            PaymentState::Partly
        };
        self.last_receipt = Some(self.step);
    }

    fn invoice(&mut self, n: usize, discount_pct: i64) {
        if self.order.status != OrderStatus::Open {
            return;
        }
        let mut value = 0;
        for l in self
            .order
            .lines
            .iter_mut()
            .filter(|l| l.status == LineStatus::Open)
            .take(n)
        {
            l.status = LineStatus::Shipped;
            value += Self::minor(l.amount);
        }
        if value == 0 {
            return;
        }
        let amount = (value - value * discount_pct / 100).max(1);
        let id = format!("R{}", self.order.invoices.len() + 1);
        let amount = self.money(amount);
        self.order.invoices.push(Invoice {
            invoice_id: id,
            amount,
            captured: false,
        });
    }

    fn cancel(&mut self, pick: Index, nlb: bool) {
        if self.order.status == OrderStatus::Closed {
            return;
        }
        let open: Vec<usize> = (0..self.order.lines.len())
            .filter(|i| self.order.lines[*i].status == LineStatus::Open)
            .collect();
        if open.is_empty() {
            return;
        }
        let i = open[pick.index(open.len())];
        self.order.lines[i].status = if nlb {
            LineStatus::NotDeliverable
        } else {
            LineStatus::Cancelled
        };
    }

    fn credit(&mut self, pick: Index, pct: i64) {
        if self.order.invoices.is_empty() {
            return;
        }
        let inv = &self.order.invoices[pick.index(self.order.invoices.len())];
        let credited: i64 = self
            .order
            .credit_notes
            .iter()
            .filter(|c| c.invoice_id.as_deref() == Some(inv.invoice_id.as_str()))
            .map(|c| Self::minor(c.amount))
            .sum();
        let left = Self::minor(inv.amount) - credited;
        if left <= 0 {
            return;
        }
        let amount = (left * pct / 100).max(1);
        let cn = CreditNote {
            credit_id: format!("C{}", self.order.credit_notes.len() + 1),
            invoice_id: Some(inv.invoice_id.clone()),
            amount: self.money(amount),
            settled: false,
        };
        self.order.credit_notes.push(cn);
    }

    fn close(&mut self) {
        if self.order.status == OrderStatus::Open && self.order.nothing_left_to_ship() {
            self.order.status = OrderStatus::Closed;
        }
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        self.tick();
        self.history.push(self.order.clone());
        match e {
            Event::Decide { dup } => self.evaluate(*dup)?,
            Event::Run { pick, outcome } => {
                let open = self.open_ops();
                if !open.is_empty() {
                    let id = open[pick.index(open.len())].clone();
                    self.run_op(&id, *outcome)?;
                }
            }
            Event::Reconcile => self.reconcile(),
            Event::Invoice {
                lines,
                discount_pct,
            } => self.invoice(*lines, *discount_pct),
            Event::CancelLine { pick, nlb } => self.cancel(*pick, *nlb),
            Event::Credit { pick, pct } => self.credit(*pick, *pct),
            Event::Close => self.close(),
            Event::Receipt { partial } => self.receipt(*partial),
            Event::StaleDecide { back } => {
                let old = self.history[back.index(self.history.len())].clone();
                let current = std::mem::replace(&mut self.order, old);
                let d = self.decide();
                self.order = current;
                self.insert(&d);
            }
        }
        self.check()
    }

    /// The invariants that hold after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        let tol = self.cfg.rounding_tolerance;
        let pos = self.psp.position().unwrap();
        prop_assert!(
            ledger::check_position(&pos, tol).is_ok(),
            "{:?}",
            ledger::check_position(&pos, tol)
        );
        prop_assert!(
            pos.charged.le_with_tolerance(&pos.authorized, tol).unwrap(),
            "captured > authorized: {:?}",
            pos
        );
        prop_assert!(
            pos.refunded.cmp_to(&pos.charged).unwrap().is_le(),
            "refunded > captured: {:?}",
            pos
        );
        let cap_and_rev = pos.charged.checked_add(pos.reversed).unwrap();
        prop_assert!(
            cap_and_rev.cmp_to(&pos.authorized).unwrap().is_le(),
            "reversed > authorized − captured: {:?}",
            pos
        );

        // one transaction per reference; every referenced transaction is one of our ops, for its amount
        let by_ref: BTreeMap<String, &Operation> = self
            .ledger
            .values()
            .map(|o| (ledger::psp_reference(&o.id), o))
            .collect();
        let mut per_ref: BTreeMap<&str, usize> = BTreeMap::new();
        let mut moved: BTreeMap<String, Money> = BTreeMap::new(); // op id → amount moved
        for t in &self.psp.transactions {
            let Some(r) = t.reference.as_deref() else {
                continue;
            };
            let n = per_ref.entry(r).or_default();
            *n += 1;
            prop_assert!(*n <= 1, "reference {} carries {} transactions", r, n);
            let op = by_ref.get(r);
            prop_assert!(op.is_some(), "transaction {} references no operation", t.id);
            let op = op.unwrap();
            let expected = op
                .plan
                .psp
                .as_ref()
                .and_then(PspCall::amount)
                .unwrap_or(self.money(0));
            prop_assert_eq!(t.amount, expected, "transaction amount of {}", op.id);
            moved.insert(op.id.clone(), t.amount);
        }
        // per ERP document: at most one money movement, never more than the document
        let ops_moved = || self.ledger.values().filter(|o| moved.contains_key(&o.id));
        for l in &self.order.lines {
            let n = ops_moved()
                .filter(|o| matches!(o.plan.purpose, Purpose::RefundLine | Purpose::CancelLines))
                .filter(|o| o.plan.doc_id.split('+').any(|d| d == l.line_id))
                .count();
            prop_assert!(n <= 1, "line {} moved money {} times", l.line_id, n);
        }
        for inv in &self.order.invoices {
            let captured: Vec<Money> = ops_moved()
                .filter(|o| {
                    o.plan.purpose == Purpose::CaptureInvoice && o.plan.doc_id == inv.invoice_id
                })
                .map(|o| moved[&o.id])
                .collect();
            prop_assert!(captured.len() <= 1);
            if let Some(c) = captured.first() {
                prop_assert!(
                    c.le_with_tolerance(&inv.amount, tol).unwrap(),
                    "invoice {} captured {:?}",
                    inv.invoice_id,
                    c
                );
            }
            prop_assert!(
                self.marks.get(&inv.invoice_id).copied().unwrap_or(0) <= 1,
                "invoice {} marked twice",
                inv.invoice_id
            );
        }
        for cn in &self.order.credit_notes {
            for o in ops_moved().filter(|o| o.plan.doc_id == cn.credit_id) {
                prop_assert_eq!(moved[&o.id], cn.amount);
            }
            prop_assert!(
                self.bookings.get(&cn.credit_id).copied().unwrap_or(0) <= 1,
                "credit {} booked twice",
                cn.credit_id
            );
        }
        Ok(())
    }

    /// Runs every open operation successfully and re-decides until nothing changes.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..25 {
            self.tick();
            self.evaluate(false)?;
            let open = self.open_ops();
            if open.is_empty() && self.last.plans.is_empty() {
                return Ok(());
            }
            for id in open {
                self.tick();
                self.run_op(&id, Outcome::Done)?;
                self.check()?;
            }
        }
        prop_assert!(false, "the engine does not come to rest: {:?}", self.last);
        Ok(())
    }

    /// Brings the order to its end (shipped or cancelled, CLOSED, paid) and checks the money.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.drain()?;
        if self.order.status == OrderStatus::Open {
            self.invoice(usize::MAX, 0);
            self.drain()?;
            self.close();
            self.drain()?;
        }
        if self.family == Family::Prepayment && !self.order.fully_cancelled() {
            self.tick();
            self.receipt(false);
            self.drain()?;
        }
        self.check()?;

        let clean = self.refused.is_empty()
            && self.ledger.values().all(|o| o.status != OpStatus::Failed)
            && self.last.errors().count() == 0;
        if !clean {
            return Ok(());
        }
        let cur = self.order.total.currency();
        let sum = |it: &mut dyn Iterator<Item = Money>| {
            it.fold(Money::zero(cur), |a, m| a.checked_add(m).unwrap())
        };
        let s_inv = sum(&mut self.order.invoices.iter().map(|i| i.amount));
        let s_cn = sum(&mut self.order.credit_notes.iter().map(|c| c.amount));
        let s_cl = sum(&mut self.order.cancelled_lines().map(|l| l.amount));
        let pos = self.psp.position().unwrap();
        let zero = Money::zero(cur);
        let returned = s_cl.checked_add(s_cn).unwrap();
        let ctx = format!(
            "{:?} {:?} pos {:?} inv {} cn {} cancelled {}",
            self.family, self.cfg.mode, pos, s_inv, s_cn, s_cl
        );
        if self.order.fully_cancelled() {
            prop_assert_eq!(
                pos.remaining().unwrap(),
                zero,
                "nothing stays open: {}",
                ctx
            );
            prop_assert_eq!(
                pos.refundable().unwrap(),
                zero,
                "everything paid is returned: {}",
                ctx
            );
            return Ok(());
        }
        prop_assert_eq!(self.order.status, OrderStatus::Closed, "{}", ctx);
        for inv in &self.order.invoices {
            prop_assert_eq!(
                self.marks.get(&inv.invoice_id).copied(),
                Some(1),
                "invoice {} booked once: {}",
                inv.invoice_id,
                ctx
            );
        }
        for cn in &self.order.credit_notes {
            prop_assert_eq!(
                self.bookings.get(&cn.credit_id).copied(),
                Some(1),
                "credit {} booked once: {}",
                cn.credit_id,
                ctx
            );
        }
        match (self.family, self.cfg.mode) {
            (Family::CardAuthorized, Mode::Expert | Mode::Link) => {
                prop_assert_eq!(
                    pos.charged,
                    s_inv.min(pos.authorized).unwrap(),
                    "captured per invoice: {}",
                    ctx
                );
                prop_assert_eq!(pos.remaining().unwrap(), zero, "payment closed: {}", ctx);
                prop_assert_eq!(pos.refunded, s_cn, "{}", ctx);
            }
            (Family::CardAuthorized, Mode::Standard) => {
                prop_assert_eq!(pos.charged, pos.authorized, "captured up front: {}", ctx);
                prop_assert_eq!(
                    pos.refunded,
                    returned,
                    "cancellations and returns refunded: {}",
                    ctx
                );
            }
            (Family::CardCharged, _) => prop_assert_eq!(pos.refunded, returned, "{}", ctx),
            (Family::Prepayment, _) => {
                prop_assert_eq!(
                    pos.reversed.checked_add(pos.refunded).unwrap(),
                    returned,
                    "{}",
                    ctx
                );
            }
            (Family::PaylaterInvoice, _) => {
                prop_assert_eq!(pos.charged, s_inv, "{}", ctx);
                prop_assert_eq!(pos.reversed, s_cl, "{}", ctx);
                prop_assert_eq!(pos.refunded, s_cn, "{}", ctx);
            }
            (Family::PaylaterDebit, _) => {
                prop_assert_eq!(pos.charged, s_inv, "{}", ctx);
                prop_assert_eq!(pos.reversed, zero, "the remainder expires: {}", ctx);
                prop_assert_eq!(pos.refunded, s_cn, "{}", ctx);
            }
        }
        Ok(())
    }
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let mut w = World::new(c);
    w.check()?;
    for e in &c.events {
        w.apply(e)?;
    }
    w.finish()
}

/// Modest case counts (a few seconds in debug); failures print the minimal input instead of
/// writing a regressions file next to the test.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn engine_keeps_money_invariants_under_random_event_sequences(c in case(false)) {
        run_case(&c)?;
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Same, with evaluations racing on older order facts (current ledger): every plan must
    /// still be budgeted against the operations in progress.
    #[test]
    fn engine_budgets_plans_from_stale_facts_against_operations_in_progress(c in case(true)) {
        run_case(&c)?;
    }
}
