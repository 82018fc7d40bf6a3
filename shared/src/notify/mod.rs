//! Operator notifications: one message per new problem of an order (e-mail through the tenant's
//! SMTP settings in a later module; a log notifier and a recording fake here).

#[cfg(feature = "email")]
pub mod email;
pub mod recording;

use async_trait::async_trait;

/// A problem to tell an operator about. Never carries secrets or card data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tenant: String,
    pub order_id: String,
    pub code: String,
    /// What failed.
    pub message: String,
    /// What to do about it.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotifyError(pub String);

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, problem: &Problem) -> Result<(), NotifyError>;
}

/// Writes problems to the log (the default when no SMTP is configured).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, p: &Problem) -> Result<(), NotifyError> {
        tracing::warn!(tenant = %p.tenant, order = %p.order_id, code = %p.code, message = %p.message, action = %p.action, "order problem");
        Ok(())
    }
}
