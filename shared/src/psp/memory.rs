//! The `memory` PSP kind: payments held in memory, keeping every transaction with the
//! reference paybridge sent (as a real PSP does), with fault injection (unknown outcomes, a
//! fetch that fails) for the "crash after the PSP call" cases. Fed from the fixtures file of a
//! `memory` ERP connection; tests use it as their PSP.

use crate::config::{Config, MethodConfig, PspKind};
use crate::ledger::PspCall;
use crate::model::{PaymentState, PspPayment, PspTransaction, TxKind, TxStatus};
use crate::money::Money;
use crate::psp::webhook::{
    IncomingWebhook, PspEvent, WebhookError, identity, valid_event, valid_id,
};
use crate::psp::{Psp, PspError, PspOutcome};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// A PSP in memory, keeping transactions with our reference as a real PSP does.
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
                at: None,
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
            PspCall::RequestPayment { .. } => {
                return Err((
                    "PAYBRIDGE.UNSUPPORTED".into(),
                    "the memory PSP makes no payment links".into(),
                ));
            }
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
            at: None,
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

/// The memory PSP's webhooks, `POST /webhooks/memory`: JSON `{event, publicKey, paymentId}`
/// (the field names of the unsigned JSON webhooks real PSPs send). Accepted only for the public
/// key of a configured `psp = "memory"` method; like every webhook it only says which payment
/// to read again.
pub struct MemoryWebhook;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookBody {
    event: String,
    public_key: String,
    payment_id: String,
}

impl IncomingWebhook for MemoryWebhook {
    fn verify(&self, config: &Config, body: &[u8]) -> Result<PspEvent, WebhookError> {
        let malformed = |why: String| {
            WebhookError::Malformed(format!("body is not a valid memory webhook: {why}"))
        };
        let hook: HookBody = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        if !config.has_public_key(PspKind::Memory, &hook.public_key) {
            return Err(WebhookError::UnknownAccount("public key"));
        }
        if !valid_event(&hook.event) {
            return Err(malformed("bad event name".into()));
        }
        if !valid_id(&hook.payment_id) {
            return Err(malformed("no valid payment id".into()));
        }
        // One stored event per (account, payment), as for Unzer (`psp::webhook`).
        let identity = identity(&[&hook.public_key, &hook.payment_id]);
        Ok(PspEvent {
            reference: None,
            event: hook.event,
            payment_id: hook.payment_id,
            account: hook.public_key,
            identity,
        })
    }
}
