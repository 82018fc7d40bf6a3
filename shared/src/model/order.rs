//! ERP facts: order header, lines, invoices and credit notes as the ERP reports them.
//!
//! ERP-neutral: every ERP connector maps its own status codes and fields onto this shape (the
//! mapping of each lives in its connector).

use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Order status in the ERP: on hold (imported, not released), open, closed (fully delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Hold,
    Open,
    Closed,
}

/// Status of one order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    Open,
    Shipped,
    Cancelled,
    NotDeliverable,
}

impl LineStatus {
    /// A line that will never be delivered (STO or NLB).
    pub fn is_cancelled(self) -> bool {
        matches!(self, LineStatus::Cancelled | LineStatus::NotDeliverable)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: String,
    pub status: LineStatus,
    /// Gross line total.
    pub amount: Money,
}

/// An invoice (with its delivery) of the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub invoice_id: String,
    /// Gross invoice total, freight and charges included.
    pub amount: Money,
    /// The ERP already marks this invoice paid/captured (by paybridge or by someone else).
    pub captured: bool,
}

/// A credit note (return or goodwill credit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditNote {
    pub credit_id: String,
    /// The invoice it credits, when the ERP links one.
    pub invoice_id: Option<String>,
    /// Positive amount to give back.
    pub amount: Money,
    /// The ERP already settled it on its own (the ERP's "refund by paybridge" mark was not set).
    pub settled: bool,
}

/// Everything the ERP says about one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErpOrder {
    /// The ERP's own order number.
    pub order_id: String,
    pub mandant: String,
    pub shop_order_no: String,
    /// PSP payment id written by the shop interface.
    pub psp_payment_id: Option<String>,
    /// ERP payment-method tag (keys the payment-method config).
    pub payment_method: String,
    pub status: OrderStatus,
    /// Gross order total, freight included.
    pub total: Money,
    pub lines: Vec<OrderLine>,
    pub shipping_lock: bool,
    pub invoices: Vec<Invoice>,
    pub credit_notes: Vec<CreditNote>,
    /// The ERP's customer (account) key, when the ERP reports one; records stored before this
    /// field existed read as `None`.
    #[serde(default)]
    pub customer_key: Option<String>,
}

impl ErpOrder {
    /// An order known only by its ERP number: every other fact empty, no lines or documents.
    /// A connector given these facts reads what it needs itself.
    pub fn known_by_id(order_id: &str, currency: crate::money::Currency) -> ErpOrder {
        ErpOrder {
            order_id: order_id.to_string(),
            mandant: String::new(),
            shop_order_no: String::new(),
            psp_payment_id: None,
            payment_method: String::new(),
            status: OrderStatus::Open,
            total: Money::zero(currency),
            lines: Vec::new(),
            shipping_lock: false,
            invoices: Vec::new(),
            credit_notes: Vec::new(),
            customer_key: None,
        }
    }

    /// Manual or exchange order: no PSP payment id and shop number = `P` + ERP order number.
    pub fn is_manual(&self) -> bool {
        self.psp_payment_id.as_deref().is_none_or(str::is_empty)
            && self.shop_order_no == format!("P{}", self.order_id)
    }

    /// Every line cancelled or not deliverable (and there is at least one line).
    pub fn fully_cancelled(&self) -> bool {
        !self.lines.is_empty() && self.lines.iter().all(|l| l.status.is_cancelled())
    }

    pub fn cancelled_lines(&self) -> impl Iterator<Item = &OrderLine> {
        self.lines.iter().filter(|l| l.status.is_cancelled())
    }

    /// No line is waiting for delivery any more.
    pub fn nothing_left_to_ship(&self) -> bool {
        self.lines.iter().all(|l| l.status != LineStatus::Open)
    }
}
