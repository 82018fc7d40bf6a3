//! The PSP webhook contract, called by the router by PSP kind (`POST /webhooks/{psp}`); the
//! model is hyperswitch's `IncomingWebhook`. A connector parses and authenticates its PSP's
//! body against the configuration and names the payment it concerns; the app stores that event
//! before the PSP gets its answer and decides nothing from the body: the payment is re-read from
//! the configured API host with the account's own credentials.

use crate::config::Config;

/// Largest webhook body any connector accepts (the HTTP layer refuses more before buffering).
pub const MAX_WEBHOOK_BYTES: usize = 16 * 1024;

/// Why a webhook was refused (each maps to an HTTP 4xx, or 503, with this text as the reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body too large ({0} bytes)")]
    TooLarge(usize),
    /// The body is not this PSP's webhook; the text says why.
    #[error("{0}")]
    Malformed(String),
    /// The body names an account no method config has (its kind of identifier follows).
    #[error("unknown {0}")]
    UnknownAccount(&'static str),
    /// The body does not authenticate (it does not decrypt with the account's key, or its
    /// MAC does not verify); the text says which.
    #[error("not authentic: {0}")]
    Unauthentic(String),
    /// No connector of that name takes webhooks.
    #[error("no webhook route for PSP {0:?}")]
    UnknownPsp(String),
    #[error("store unavailable, try again")]
    Unavailable,
    /// The tenant's budget of events for payments paybridge does not know is used up for now;
    /// the PSP may send again after this many seconds.
    #[error("too many events for unknown payments; try again in {0} s")]
    OverBudget(i64),
}

/// One authenticated webhook: which payment to look at again, and how to recognise a repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspEvent {
    /// The PSP's event name (`payment.completed`, …), checked to be a short plain name.
    pub event: String,
    /// The payment to re-read, checked to be a plain id.
    pub payment_id: String,
    /// The account the PSP named (the configured identifier the body was authenticated with).
    pub account: String,
    /// The store keeps one event per identity: one per (account, payment) for every connector
    /// here, so varying what else a body says (event name, URLs) makes no new stored event.
    pub identity: String,
    /// The merchant's reference of the payment the body names, checked to be a plain id
    /// (Paygate: `TransID`); how a payment paybridge asked for (a payment link) finds its order.
    pub reference: Option<String>,
}

/// A PSP's incoming webhooks.
pub trait IncomingWebhook: Send + Sync {
    /// Largest body accepted, at most [`MAX_WEBHOOK_BYTES`].
    fn max_body(&self) -> usize {
        MAX_WEBHOOK_BYTES
    }

    /// Parses and authenticates one body. Nothing is fetched here and nothing in the body is
    /// trusted beyond what authenticates it.
    fn verify(&self, config: &Config, body: &[u8]) -> Result<PspEvent, WebhookError>;
}

/// A stable identity for a webhook body's authenticated parts: 16 bytes of SHA-256 over them,
/// `|`-joined, in hex.
pub fn identity(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(parts.join("|").as_bytes())[..16])
}

/// A plain id: 1–64 ASCII letters, digits, `-` or `_`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A plain event name: 1–64 ASCII letters, digits, `.` or `_`.
pub fn valid_event(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}
