//! The logging wrappers `paybridge` puts around the connectors that
//! [`paybridge_core::wiring::connectors`] builds.
//!
//! [`LoggedErp`] and [`LoggedPsp`] log every write and money call at `info`, so a local run shows
//! what paybridge did (released, captured, locked) without reading the database. They log labels
//! and amounts, never comment texts, bank details or credentials.

use async_trait::async_trait;
use paybridge_core::config::MethodConfig;
use paybridge_core::erp::{Changes, Erp, ErpError};
use paybridge_core::ledger::{ErpWrite, PspCall};
use paybridge_core::model::{ErpOrder, PspPayment};
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use std::sync::Arc;

/// An ERP connection that logs what is written to it.
pub struct LoggedErp {
    connection: String,
    inner: Arc<dyn Erp>,
}

impl LoggedErp {
    pub fn new(connection: impl Into<String>, inner: Arc<dyn Erp>) -> LoggedErp {
        LoggedErp {
            connection: connection.into(),
            inner,
        }
    }
}

/// A short, log-safe description of an ERP write (no comment text, no bank details).
pub fn write_label(w: &ErpWrite) -> String {
    match w {
        ErpWrite::Release => "order released (HOLD -> OPEN)".into(),
        ErpWrite::SetShippingLock => "shipping lock set".into(),
        ErpWrite::ClearShippingLock => "shipping lock cleared".into(),
        ErpWrite::MarkInvoiceCaptured {
            invoice_id,
            event_code,
            amount,
        } => format!("invoice {invoice_id} marked captured ({amount}, event {event_code})"),
        ErpWrite::ManualBooking {
            amount,
            event_code,
            document,
        } => format!("manual booking {amount} for {document} (event {event_code})"),
        ErpWrite::TransferDetails { .. } => "prepayment transfer details written".into(),
        ErpWrite::Comment { .. } => "order comment written".into(),
    }
}

/// A short description of a PSP money call.
pub fn call_label(c: &PspCall) -> String {
    match c {
        PspCall::Capture { amount } => format!("capture {amount}"),
        PspCall::Reverse { amount } => format!("reverse {amount}"),
        PspCall::Refund { amount, reason } => format!("refund {amount} ({reason:?})"),
        PspCall::Shipment { invoice_id } => format!("shipment of invoice {invoice_id}"),
        PspCall::RequestPayment { amount } => format!("payment request {amount}"),
    }
}

#[async_trait]
impl Erp for LoggedErp {
    async fn changes(&self, watermark: Option<&str>) -> Result<Changes, ErpError> {
        let r = self.inner.changes(watermark).await;
        if let Ok(c) = &r
            && !c.order_ids.is_empty()
        {
            tracing::info!(connection = %self.connection, orders = c.order_ids.len(), "ERP: orders changed");
        }
        r
    }

    async fn orders(&self, order_ids: &[String]) -> Result<Vec<ErpOrder>, ErpError> {
        self.inner.orders(order_ids).await
    }

    async fn apply(
        &self,
        order: &ErpOrder,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        let order_id = &order.order_id;
        let r = self.inner.apply(order, write, op_ref).await;
        match &r {
            Ok(()) => tracing::info!(
                connection = %self.connection,
                order = %order_id,
                op = %op_ref,
                "ERP: {}",
                write_label(write)
            ),
            Err(e) => tracing::warn!(
                connection = %self.connection,
                order = %order_id,
                op = %op_ref,
                error = %e,
                "ERP write failed: {}",
                write_label(write)
            ),
        }
        r
    }

    async fn was_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError> {
        self.inner.was_applied(order_id, write, op_ref).await
    }

    fn can_read_back(&self, order_id: &str, write: &ErpWrite) -> bool {
        self.inner.can_read_back(order_id, write)
    }

    async fn customer_email(&self, order: &ErpOrder) -> Result<Option<String>, ErpError> {
        // Forwarded: the default says "none". The address is personal data: not logged.
        let r = self.inner.customer_email(order).await;
        if let Err(e) = &r {
            tracing::warn!(connection = %self.connection, order = %order.order_id, error = %e, "ERP: customer e-mail not read");
        }
        r
    }
}

/// A PSP that logs every money call and its outcome.
pub struct LoggedPsp {
    inner: Arc<dyn Psp>,
}

impl LoggedPsp {
    pub fn new(inner: Arc<dyn Psp>) -> LoggedPsp {
        LoggedPsp { inner }
    }
}

#[async_trait]
impl Psp for LoggedPsp {
    async fn fetch(
        &self,
        account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        self.inner.fetch(account, payment_id).await
    }

    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let outcome = self.inner.execute(account, payment, call, reference).await;
        let payment_id = payment.payment_id.as_str();
        match &outcome {
            PspOutcome::Done { tx_id } => {
                tracing::info!(payment = %payment_id, tx = %tx_id, "PSP: {} done", call_label(call));
            }
            PspOutcome::Pending { tx_id } => {
                tracing::info!(payment = %payment_id, tx = %tx_id, "PSP: {} pending", call_label(call));
            }
            PspOutcome::Declined { code, message } => {
                tracing::warn!(payment = %payment_id, code = %code, message = %message, "PSP: {} declined", call_label(call));
            }
            PspOutcome::Retryable { message } | PspOutcome::Unknown { message } => {
                tracing::warn!(payment = %payment_id, message = %message, "PSP: {} not confirmed", call_label(call));
            }
        }
        outcome
    }

    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<paybridge_core::model::PspTransaction>, PspError> {
        // Forwarded: the trait's default only sees references in the fetched view, which Unzer
        // does not list, and would make every reconciliation find nothing.
        self.inner
            .find_transaction(account, payment, call, reference)
            .await
    }

    fn payment_link(
        &self,
        account: &MethodConfig,
        request: &paybridge_core::psp::LinkRequest,
    ) -> Result<String, PspError> {
        // Forwarded: the default says "unsupported". The link itself is the customer's: not logged.
        let link = self.inner.payment_link(account, request);
        match &link {
            Ok(_) => tracing::info!(reference = %request.reference, "PSP: payment link built"),
            Err(e) => {
                tracing::warn!(reference = %request.reference, error = %e, "PSP: no payment link")
            }
        }
        link
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paybridge_core::money::{Currency, Money};

    #[test]
    fn labels_carry_no_comment_text() {
        let c = ErpWrite::Comment {
            text: "secret-ish customer note".into(),
        };
        assert!(!write_label(&c).contains("customer"));
        let cap = PspCall::Capture {
            amount: Money::from_minor(4990, Currency::EUR),
        };
        assert_eq!(call_label(&cap), "capture 49.90 EUR");
    }

    #[test]
    fn memory_fixtures_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.json");
        std::fs::write(&path, "{\"orders\": [}").expect("write");
        let e = paybridge_core::erp::memory::load_fixtures(&path)
            .err()
            .expect("invalid JSON");
        assert!(e.starts_with(&format!("{}:1:", path.display())), "{e}");
    }
}
