//! The PSP adapter contract ([`Psp`] for money calls and reads, [`webhook::IncomingWebhook`]
//! for what the PSP posts), the connectors that implement it (one folder per PSP kind), and the
//! registry that maps a method config's `psp = "…"` to its connector.
//!
//! Adding a PSP: a `psp/<kind>.rs` (+ `psp/<kind>/`) connector, one [`PspKind`] variant and one
//! line in [`webhook`] (if it posts webhooks) and in the wiring builder; nothing in the engine,
//! the ledger, the model or the app changes.
//!
//! Every money call answers one of [`PspOutcome`]: a timeout or a 5xx after the request may have
//! been processed is `Unknown`, never a failure, and the caller resolves it by fetching the
//! payment and looking for the transaction carrying our reference.

use crate::config::MethodConfig;
use crate::ledger::PspCall;
use crate::model::{PspPayment, PspTransaction};
use crate::money::Money;
pub mod memory;
#[cfg(feature = "paygate")]
pub mod paygate;
#[cfg(feature = "unzer")]
pub mod unzer;
pub mod webhook;

use crate::config::PspKind;
use std::collections::HashMap;
use std::sync::Arc;
use webhook::IncomingWebhook;

/// The registry of webhook receivers: `POST /webhooks/{psp}` is served by the connector named
/// here, `None` for a name no connector answers to.
pub fn webhook(psp: &str) -> Option<&'static dyn IncomingWebhook> {
    match psp {
        #[cfg(feature = "unzer")]
        "unzer" => Some(&unzer::webhook::UnzerWebhook),
        #[cfg(feature = "paygate")]
        "paygate" => Some(&paygate::webhook::PaygateNotify),
        "memory" => Some(&memory::MemoryWebhook),
        _ => None,
    }
}

use async_trait::async_trait;

/// A connector's API base from its configured host: `scheme://host[:port]` only, `https`, or
/// plain `http` for a loopback host (a simulator), so a key never crosses a network
/// unencrypted. `adds` names the paths the connector appends, for the error.
pub fn checked_base(raw: &str, adds: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw).map_err(|e| format!("api_host {raw:?} is not a URL: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "api_host {raw:?} must use https (plain http only for a loopback simulator)"
            ));
        }
        other => return Err(format!("api_host {raw:?}: unsupported scheme {other:?}")),
    }
    if u.host().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.path() != "/"
    {
        return Err(format!(
            "api_host {raw:?} must be scheme://host[:port] only; the connector adds {adds}"
        ));
    }
    Ok(u)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PspError {
    #[error("PSP temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("PSP payment {0} not found")]
    NotFound(String),
    #[error("PSP refused the credentials: {0}")]
    Auth(String),
    #[error("PSP reply invalid: {0}")]
    BadReply(String),
    /// The connector cannot do this (a payment link of a PSP without hosted payment pages).
    #[error("not supported by this PSP: {0}")]
    Unsupported(String),
}

/// What a payment link asks the customer to pay (behaviour.md §3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// Our id of the requested payment, the same on every send of the link (the PSP's merchant
    /// transaction id and idempotency key: a link paid twice makes one payment).
    pub reference: String,
    pub amount: Money,
    /// The order number the customer sees.
    pub order_id: String,
    /// What the payment page shows (ASCII).
    pub description: String,
    /// Where the PSP posts its notify.
    pub notify_url: String,
    /// Where the customer returns after paying, and after giving up.
    pub success_url: String,
    pub failure_url: String,
}

/// The result of one money call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PspOutcome {
    /// Done; the PSP's transaction id.
    Done { tx_id: String },
    /// Accepted but not final yet (e.g. a direct debit); look again later.
    Pending { tx_id: String },
    /// Refused for good (business decline, state conflict). Nothing moved, except for a refund
    /// spread over several charges that failed part-way (Unzer code `PAYBRIDGE.REFUND_PARTIAL`,
    /// whose message lists the parts made): the operation is flagged for a human either way.
    Declined { code: String, message: String },
    /// Known not processed (connection refused, 429); safe to send again later.
    Retryable { message: String },
    /// Maybe processed (timeout, 5xx after sending): reconcile before any resend.
    Unknown { message: String },
}

#[async_trait]
pub trait Psp: Send + Sync {
    /// The payment as the PSP sees it now, with the method config's credentials.
    async fn fetch(&self, account: &MethodConfig, payment_id: &str)
    -> Result<PspPayment, PspError>;

    /// Performs one call on the payment; `reference` is our operation's PSP reference and must
    /// travel with the request so a later fetch can find the transaction.
    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome;

    /// Reconciliation after an unknown outcome: the transaction made for `call` that carries
    /// `reference`, if the PSP has one. The default looks at the references in the fetched
    /// view; a connector whose payment view lacks references (Unzer lists transactions without
    /// them) fetches the candidate transactions instead.
    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let _ = (account, call);
        Ok(payment.find_by_reference(reference).cloned())
    }

    /// The link to the PSP's payment page for `request`, with the method config's account.
    /// Building it moves no money and calls nothing; the customer pays on the page and the
    /// PSP reports the payment through its webhook naming `request.reference`.
    fn payment_link(
        &self,
        account: &MethodConfig,
        request: &LinkRequest,
    ) -> Result<String, PspError> {
        let _ = (account, request);
        Err(PspError::Unsupported("payment links".into()))
    }
}

/// Chooses the connector by each method config's `psp` kind, so one process can serve
/// configs of several PSPs side by side.
#[derive(Clone, Default)]
pub struct PspRouter {
    connectors: HashMap<PspKind, Arc<dyn Psp>>,
}

impl PspRouter {
    /// Adds (or replaces) the connector of one kind.
    pub fn with(mut self, kind: PspKind, connector: Arc<dyn Psp>) -> PspRouter {
        self.connectors.insert(kind, connector);
        self
    }

    fn pick(&self, account: &MethodConfig) -> Result<&dyn Psp, PspError> {
        self.connectors
            .get(&account.psp)
            .map(|p| p.as_ref())
            .ok_or_else(|| PspError::Auth(format!("no {:?} connector configured", account.psp)))
    }
}

#[async_trait]
impl Psp for PspRouter {
    async fn fetch(
        &self,
        account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        self.pick(account)?.fetch(account, payment_id).await
    }

    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        match self.pick(account) {
            Ok(p) => p.execute(account, payment, call, reference).await,
            Err(e) => PspOutcome::Declined {
                code: "config".into(),
                message: e.to_string(),
            },
        }
    }

    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        self.pick(account)?
            .find_transaction(account, payment, call, reference)
            .await
    }

    fn payment_link(
        &self,
        account: &MethodConfig,
        request: &LinkRequest,
    ) -> Result<String, PspError> {
        self.pick(account)?.payment_link(account, request)
    }
}
