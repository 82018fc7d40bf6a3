//! The ERP adapter contract. pixi (SOAP) implements it in [`pixi`]; tests and the local
//! `memory` connection kind use [`crate::erp::memory::MemoryErp`].
//!
//! ERP writes are not idempotent (pixi has no request ids), so the contract has a read-back:
//! after a write whose outcome is unknown, [`Erp::was_applied`] is asked before writing again.
//!
//! Besides the order facts, a connector may tell the customer's e-mail address
//! ([`Erp::customer_email`], for payment links, behaviour.md §3.6); every address a connector
//! hands out has passed [`crate::notify::plain_email_address`], the check the mail is sent
//! with.

use crate::ledger::ErpWrite;
use crate::model::ErpOrder;
pub mod memory;
#[cfg(feature = "pixi")]
pub mod pixi;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErpError {
    /// Known not applied; worth trying again later (connection refused, 503, quiet hours).
    #[error("ERP temporarily unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have been processed (timeout after sending).
    #[error("ERP outcome unknown: {0}")]
    Unknown(String),
    /// The ERP refused the request (SOAP fault, ERROR return code); retrying will not help.
    #[error("ERP refused: {0}")]
    Refused(String),
    /// The reply could not be understood.
    #[error("ERP reply invalid: {0}")]
    BadReply(String),
}

/// What changed in the ERP since a watermark.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Orders to look at (to authorize, with invoices to capture, changed).
    pub order_ids: Vec<String>,
    /// The watermark to store once the work for these orders is durably planned.
    pub watermark: String,
}

#[async_trait]
pub trait Erp: Send + Sync {
    /// Orders that need attention since `watermark` (`None`: from the beginning).
    async fn changes(&self, watermark: Option<&str>) -> Result<Changes, ErpError>;

    /// The full facts of several orders in one batch; unknown ids are left out.
    async fn orders(&self, order_ids: &[String]) -> Result<Vec<ErpOrder>, ErpError>;

    /// Performs one write for the order `order` (its facts as last read: a connector takes the
    /// ids a write needs from them and reads the ERP itself only for a fact missing there).
    /// `op_ref` identifies the operation (used in comments / booking texts so a read-back can
    /// recognise it).
    async fn apply(&self, order: &ErpOrder, write: &ErpWrite, op_ref: &str)
    -> Result<(), ErpError>;

    /// Whether a write with this `op_ref` is visible in the ERP; `None` if the ERP cannot tell.
    async fn was_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError>;

    /// Whether [`Erp::was_applied`] tells this write (`Some`) whenever the ERP answers. Such a
    /// write may be sent right after the operation's previous write without an in-flight mark of
    /// its own: after a crash it is read back with the previous one.
    fn can_read_back(&self, _order_id: &str, _write: &ErpWrite) -> bool {
        false
    }

    /// The e-mail address of the order's customer (a payment link is sent there); `None` when the
    /// ERP has none for it. Connectors that cannot tell keep the default.
    async fn customer_email(&self, order: &ErpOrder) -> Result<Option<String>, ErpError> {
        let _ = order;
        Ok(None)
    }
}
