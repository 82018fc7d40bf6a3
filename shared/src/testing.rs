//! In-memory ERP, PSP and notifier: test doubles with the semantics of the real systems that
//! matter to paybridge (an ERP that applies writes non-idempotently and records them; a PSP that
//! keeps transactions with our reference, as Unzer does), plus fault injection for the
//! "crash after the PSP call" cases. Also the `memory` connection kind of `paybridge serve`,
//! seeded from a JSON fixtures file, so a newcomer can run the whole loop without any account.

use crate::config::MethodConfig;
use crate::erp::{Changes, Erp, ErpError};
use crate::ledger::{ErpWrite, PspCall};
use crate::model::{
    BankDetails, ErpOrder, LineStatus, OrderStatus, PaymentState, PspPayment, PspTransaction,
    TxKind, TxStatus,
};
use crate::money::Money;
use crate::notify::{Notifier, NotifyError, Problem};
use crate::psp::{Psp, PspError, PspOutcome};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A booking in the ERP customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub order_id: String,
    pub document: String,
    pub event_code: String,
    pub amount: Money,
}

#[derive(Default)]
struct ErpState {
    orders: BTreeMap<String, ErpOrder>,
    /// change counter per order; watermark = highest counter seen
    changed_at: BTreeMap<String, u64>,
    counter: u64,
    comments: BTreeMap<String, Vec<String>>,
    bookings: Vec<Booking>,
    transfer: BTreeMap<String, BankDetails>,
    applied: Vec<(String, String, ErpWrite)>,
    calls: u64,
    fail_next_apply: Option<ErpError>,
    /// Apply the next write, then report it as unknown (the reply was lost).
    lose_next_reply: bool,
    reachable: bool,
}

/// An ERP in memory. Writes are applied like pixi applies them: not idempotent.
#[derive(Clone)]
pub struct MemoryErp {
    state: Arc<Mutex<ErpState>>,
}

impl Default for MemoryErp {
    fn default() -> Self {
        MemoryErp::new()
    }
}

impl MemoryErp {
    pub fn new() -> MemoryErp {
        MemoryErp {
            state: Arc::new(Mutex::new(ErpState {
                reachable: true,
                ..ErpState::default()
            })),
        }
    }

    /// Adds or replaces an order (as the shop interface or a user would) and marks it changed.
    pub fn upsert(&self, order: ErpOrder) {
        let mut s = lock(&self.state);
        s.counter += 1;
        let c = s.counter;
        s.changed_at.insert(order.order_id.clone(), c);
        s.orders.insert(order.order_id.clone(), order);
    }

    /// Edits an order in place and marks it changed.
    pub fn edit(&self, order_id: &str, f: impl FnOnce(&mut ErpOrder)) {
        let mut s = lock(&self.state);
        if let Some(o) = s.orders.get_mut(order_id) {
            f(o);
        }
        s.counter += 1;
        let c = s.counter;
        s.changed_at.insert(order_id.to_string(), c);
    }

    pub fn order(&self, order_id: &str) -> Option<ErpOrder> {
        lock(&self.state).orders.get(order_id).cloned()
    }

    pub fn comments(&self, order_id: &str) -> Vec<String> {
        lock(&self.state)
            .comments
            .get(order_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn bookings(&self, order_id: &str) -> Vec<Booking> {
        lock(&self.state)
            .bookings
            .iter()
            .filter(|b| b.order_id == order_id)
            .cloned()
            .collect()
    }

    pub fn transfer_details(&self, order_id: &str) -> Option<BankDetails> {
        lock(&self.state).transfer.get(order_id).cloned()
    }

    /// Number of ERP calls served (reads and writes).
    pub fn calls(&self) -> u64 {
        lock(&self.state).calls
    }

    /// All writes applied, in order: (order, op reference, write).
    pub fn writes(&self) -> Vec<(String, String, ErpWrite)> {
        lock(&self.state).applied.clone()
    }

    pub fn fail_next_apply(&self, e: ErpError) {
        lock(&self.state).fail_next_apply = Some(e);
    }

    pub fn lose_next_reply(&self) {
        lock(&self.state).lose_next_reply = true;
    }

    pub fn set_reachable(&self, up: bool) {
        lock(&self.state).reachable = up;
    }
}

#[async_trait]
impl Erp for MemoryErp {
    async fn changes(&self, watermark: Option<&str>) -> Result<Changes, ErpError> {
        let mut s = lock(&self.state);
        if !s.reachable {
            return Err(ErpError::Unavailable("memory ERP switched off".into()));
        }
        s.calls += 1;
        let since: u64 = match watermark {
            None => 0,
            Some(w) => w
                .parse()
                .map_err(|_| ErpError::BadReply(format!("bad watermark {w:?}")))?,
        };
        let mut ids: Vec<(u64, String)> = s
            .changed_at
            .iter()
            .filter(|(_, c)| **c > since)
            .map(|(id, c)| (*c, id.clone()))
            .collect();
        ids.sort();
        Ok(Changes {
            order_ids: ids.into_iter().map(|(_, id)| id).collect(),
            watermark: s.counter.to_string(),
        })
    }

    async fn orders(&self, order_ids: &[String]) -> Result<Vec<ErpOrder>, ErpError> {
        let mut s = lock(&self.state);
        if !s.reachable {
            return Err(ErpError::Unavailable("memory ERP switched off".into()));
        }
        s.calls += 1;
        Ok(order_ids
            .iter()
            .filter_map(|id| s.orders.get(id).cloned())
            .collect())
    }

    async fn apply(&self, order_id: &str, write: &ErpWrite, op_ref: &str) -> Result<(), ErpError> {
        let mut s = lock(&self.state);
        if !s.reachable {
            return Err(ErpError::Unavailable("memory ERP switched off".into()));
        }
        s.calls += 1;
        if let Some(e) = s.fail_next_apply.take() {
            return Err(e);
        }
        let Some(order) = s.orders.get_mut(order_id) else {
            return Err(ErpError::Refused(format!("order {order_id} not found")));
        };
        match write {
            ErpWrite::Release => {
                if order.status == OrderStatus::Hold {
                    order.status = OrderStatus::Open;
                }
            }
            ErpWrite::SetShippingLock => order.shipping_lock = true,
            ErpWrite::ClearShippingLock => order.shipping_lock = false,
            ErpWrite::MarkInvoiceCaptured { invoice_id, .. } => {
                match order
                    .invoices
                    .iter_mut()
                    .find(|i| &i.invoice_id == invoice_id)
                {
                    Some(i) => i.captured = true,
                    None => {
                        return Err(ErpError::Refused(format!("invoice {invoice_id} not found")));
                    }
                }
            }
            ErpWrite::ManualBooking { .. }
            | ErpWrite::TransferDetails { .. }
            | ErpWrite::Comment { .. } => {}
        }
        match write {
            ErpWrite::MarkInvoiceCaptured {
                invoice_id,
                event_code,
                amount,
            } => s.bookings.push(Booking {
                order_id: order_id.into(),
                document: invoice_id.clone(),
                event_code: event_code.clone(),
                amount: *amount,
            }),
            ErpWrite::ManualBooking {
                amount,
                event_code,
                document,
            } => s.bookings.push(Booking {
                order_id: order_id.into(),
                document: document.clone(),
                event_code: event_code.clone(),
                amount: *amount,
            }),
            ErpWrite::TransferDetails { details } => {
                s.transfer.insert(order_id.into(), details.clone());
            }
            ErpWrite::Comment { text } => s
                .comments
                .entry(order_id.into())
                .or_default()
                .push(text.clone()),
            _ => {}
        }
        s.applied
            .push((order_id.into(), op_ref.into(), write.clone()));
        if std::mem::take(&mut s.lose_next_reply) {
            return Err(ErpError::Unknown("reply lost".into()));
        }
        Ok(())
    }

    async fn was_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError> {
        let mut s = lock(&self.state);
        s.calls += 1;
        Ok(Some(s.applied.iter().any(|(o, r, w)| {
            o == order_id && r == op_ref && w == write
        })))
    }
}

#[derive(Default)]
struct PspState {
    payments: BTreeMap<String, PspPayment>,
    /// Money calls per payment that reached the PSP.
    calls: BTreeMap<String, u32>,
    fetches: u64,
    /// Outcome to give the next money call instead of the real one (and whether to apply it).
    next: Option<(PspOutcome, bool)>,
    tx_seq: u64,
    fetch_down: bool,
}

/// A PSP in memory, keeping transactions with our reference like Unzer does.
#[derive(Clone, Default)]
pub struct MemoryPsp {
    state: Arc<Mutex<PspState>>,
}

impl MemoryPsp {
    pub fn new() -> MemoryPsp {
        MemoryPsp::default()
    }

    pub fn put(&self, p: PspPayment) {
        lock(&self.state).payments.insert(p.payment_id.clone(), p);
    }

    pub fn payment(&self, id: &str) -> Option<PspPayment> {
        lock(&self.state).payments.get(id).cloned()
    }

    /// Money calls (capture/reverse/refund/shipment) that reached the PSP for this payment.
    pub fn money_calls(&self, id: &str) -> u32 {
        lock(&self.state).calls.get(id).copied().unwrap_or(0)
    }

    pub fn fetches(&self) -> u64 {
        lock(&self.state).fetches
    }

    /// The next money call is processed (if `apply`) but answers `outcome`.
    pub fn inject_next(&self, outcome: PspOutcome, apply: bool) {
        lock(&self.state).next = Some((outcome, apply));
    }

    pub fn set_fetch_down(&self, down: bool) {
        lock(&self.state).fetch_down = down;
    }

    /// A customer transfer arrives for a prepayment: a successful receipt charge.
    pub fn receive_transfer(&self, payment_id: &str, amount: Money) {
        let mut s = lock(&self.state);
        s.tx_seq += 1;
        let n = s.tx_seq;
        if let Some(p) = s.payments.get_mut(payment_id) {
            p.transactions.push(PspTransaction {
                id: format!("s-chg-r{n}"),
                kind: TxKind::Charge,
                status: TxStatus::Success,
                amount,
                reference: None,
            });
            if p.received_in_full().unwrap_or(false) {
                p.state = PaymentState::Completed;
            } else {
                p.state = PaymentState::Partly;
            }
        }
    }

    fn apply(
        s: &mut PspState,
        payment_id: &str,
        call: &PspCall,
        reference: &str,
    ) -> Result<String, (String, String)> {
        s.tx_seq += 1;
        let n = s.tx_seq;
        let Some(p) = s.payments.get_mut(payment_id) else {
            return Err(("API.310.100.003".into(), "payment not found".into()));
        };
        let pos = p
            .position()
            .map_err(|e| ("API.000".into(), e.to_string()))?;
        let (kind, amount, prefix) = match call {
            PspCall::Capture { amount } => (TxKind::Charge, *amount, "s-chg"),
            PspCall::Reverse { amount } => (TxKind::CancelAuthorize, *amount, "s-cnl"),
            PspCall::Refund { amount, .. } => (TxKind::CancelCharge, *amount, "s-cnl"),
            PspCall::Shipment { .. } => (TxKind::Shipment, Money::zero(p.currency), "s-shp"),
        };
        // The PSP's own limits (Unzer refuses captures above the remaining amount, refunds
        // above the charged amount).
        let over = |a: Money, limit: Money| a.cmp_to(&limit).map(|o| o.is_gt()).unwrap_or(true);
        match call {
            PspCall::Capture { amount } if over(*amount, pos.remaining().unwrap_or(*amount)) => {
                return Err((
                    "API.330.100.007".into(),
                    "charged amount higher than expected".into(),
                ));
            }
            PspCall::Reverse { amount } if over(*amount, pos.remaining().unwrap_or(*amount)) => {
                return Err(("API.340.000.004".into(), "cancel not allowed".into()));
            }
            PspCall::Refund { amount, .. }
                if over(*amount, pos.refundable().unwrap_or(*amount)) =>
            {
                return Err(("API.340.000.004".into(), "cancel not allowed".into()));
            }
            _ => {}
        }
        let id = format!("{prefix}-{n}");
        p.transactions.push(PspTransaction {
            id: id.clone(),
            kind,
            status: TxStatus::Success,
            amount,
            reference: Some(reference.to_string()),
        });
        if let Ok(pos) = p.position() {
            let open = pos.remaining().unwrap_or(pos.authorized);
            p.state = if pos.charged.is_positive()
                && pos.refundable().is_ok_and(|r| r.is_zero())
                && open.is_zero()
            {
                PaymentState::Canceled
            } else if pos.charged.is_positive() && open.is_zero() {
                PaymentState::Completed
            } else if pos.charged.is_positive() {
                PaymentState::Partly
            } else if open.is_zero() && pos.reversed.is_positive() {
                PaymentState::Canceled
            } else {
                p.state
            };
        }
        Ok(id)
    }
}

#[async_trait]
impl Psp for MemoryPsp {
    async fn fetch(
        &self,
        _account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        let mut s = lock(&self.state);
        if s.fetch_down {
            return Err(PspError::Unavailable("memory PSP switched off".into()));
        }
        s.fetches += 1;
        s.payments
            .get(payment_id)
            .cloned()
            .ok_or_else(|| PspError::NotFound(payment_id.to_string()))
    }

    async fn execute(
        &self,
        _account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let mut s = lock(&self.state);
        if let Some((outcome, apply)) = s.next.take() {
            if apply {
                *s.calls.entry(payment.payment_id.clone()).or_default() += 1;
                let _ = MemoryPsp::apply(&mut s, &payment.payment_id, call, reference);
            }
            return outcome;
        }
        *s.calls.entry(payment.payment_id.clone()).or_default() += 1;
        match MemoryPsp::apply(&mut s, &payment.payment_id, call, reference) {
            Ok(tx_id) => PspOutcome::Done { tx_id },
            Err((code, message)) => PspOutcome::Declined { code, message },
        }
    }
}

/// Records every problem it is told about; can be made to fail like an unreachable mail server.
#[derive(Clone, Default)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Problem>>>,
    down: Arc<Mutex<bool>>,
}

impl RecordingNotifier {
    pub fn sent(&self) -> Vec<Problem> {
        lock(&self.sent).clone()
    }

    /// While down, every notification fails and nothing is recorded.
    pub fn set_down(&self, down: bool) {
        *lock(&self.down) = down;
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, p: &Problem) -> Result<(), NotifyError> {
        if *lock(&self.down) {
            return Err(NotifyError("mail server unreachable".into()));
        }
        lock(&self.sent).push(p.clone());
        Ok(())
    }
}

/// Contents of a `memory` fixtures file.
#[derive(Debug, Deserialize)]
pub struct Fixtures {
    #[serde(default)]
    pub orders: Vec<ErpOrder>,
    #[serde(default)]
    pub payments: Vec<PspPayment>,
}

/// Loads a fixtures file into a fresh memory ERP, adding its payments to `psp` (one memory PSP
/// can serve several memory connections).
pub fn load_fixtures_into(path: &Path, psp: &MemoryPsp) -> Result<MemoryErp, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let col = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        format!("{}:{line}:{col}: not valid UTF-8", path.display())
    })?;
    let f: Fixtures = serde_json::from_str(&text)
        .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    let erp = MemoryErp::new();
    for o in f.orders {
        erp.upsert(o);
    }
    for p in f.payments {
        psp.put(p);
    }
    Ok(erp)
}

/// Loads a fixtures file into a fresh memory ERP and PSP.
pub fn load_fixtures(path: &Path) -> Result<(MemoryErp, MemoryPsp), String> {
    let psp = MemoryPsp::new();
    let erp = load_fixtures_into(path, &psp)?;
    Ok((erp, psp))
}

/// Shorthand for tests: a line.
pub fn line(id: &str, status: LineStatus, amount: Money) -> crate::model::OrderLine {
    crate::model::OrderLine {
        line_id: id.into(),
        status,
        amount,
    }
}
