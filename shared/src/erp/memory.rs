//! The `memory` ERP connection kind: an ERP held in memory with the semantics of a real one
//! that matter to paybridge (writes applied non-idempotently and recorded, changes listed by a
//! watermark), fault injection for the "crash after the write" cases, and the JSON fixtures
//! file `paybridge serve` seeds it from, so a newcomer can run the whole loop without any
//! account. Tests use it as their ERP.
//!
//! A fixtures order may carry `"customer_email"` (beside the order's fields): the customer's
//! address [`Erp::customer_email`] answers for it (`None` with a warning when it is not one
//! plain address). Tests set it with [`MemoryErp::set_customer_email`].

use crate::config::read::{FIXTURES_LIMIT, read_text};
use crate::erp::{Changes, Erp, ErpError};
use crate::ledger::ErpWrite;
use crate::model::{BankDetails, ErpOrder, LineStatus, OrderLine, OrderStatus, PspPayment};
use crate::money::Money;
use crate::notify::plain_email_address;
use crate::psp::memory::MemoryPsp;
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
    /// The customer's e-mail address per order, as the ERP holds it (unchecked).
    customer_emails: BTreeMap<String, String>,
    applied: Vec<(String, String, ErpWrite)>,
    calls: u64,
    fail_next_apply: Option<ErpError>,
    /// Apply the next write, then report it as unknown (the reply was lost).
    lose_next_reply: bool,
    reachable: bool,
}

/// An ERP in memory. Writes are applied like a real ERP applies them: not idempotent.
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

    /// Sets (or, with `None`, removes) the e-mail address the ERP holds for the customer of
    /// `order_id`, as given: [`Erp::customer_email`] checks it when asked.
    pub fn set_customer_email(&self, order_id: &str, email: Option<&str>) {
        let mut s = lock(&self.state);
        match email {
            Some(e) => s
                .customer_emails
                .insert(order_id.to_string(), e.to_string()),
            None => s.customer_emails.remove(order_id),
        };
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

    async fn apply(
        &self,
        order: &ErpOrder,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        let order_id = order.order_id.as_str();
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

    /// Every write is remembered with its operation.
    fn can_read_back(&self, _order_id: &str, _write: &ErpWrite) -> bool {
        true
    }

    async fn customer_email(&self, order: &ErpOrder) -> Result<Option<String>, ErpError> {
        let mut s = lock(&self.state);
        if !s.reachable {
            return Err(ErpError::Unavailable("memory ERP switched off".into()));
        }
        s.calls += 1;
        let Some(raw) = s.customer_emails.get(&order.order_id) else {
            return Ok(None);
        };
        match plain_email_address(raw) {
            Ok(a) => Ok(Some(a.to_string())),
            Err(why) => {
                tracing::warn!(
                    order = %order.order_id,
                    why,
                    "the memory ERP's e-mail address for the order's customer is not usable"
                );
                Ok(None)
            }
        }
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

/// The customer e-mail addresses of a fixtures file: its orders' optional `customer_email`
/// (read in a second pass, so [`Fixtures`] and its error positions stay as they are).
#[derive(Debug, Deserialize)]
struct FixtureEmails {
    #[serde(default)]
    orders: Vec<OrderEmail>,
}

#[derive(Debug, Deserialize)]
struct OrderEmail {
    order_id: String,
    #[serde(default)]
    customer_email: Option<String>,
}

/// Loads a fixtures file into a fresh memory ERP, adding its payments to `psp` (one memory PSP
/// can serve several memory connections).
pub fn load_fixtures_into(path: &Path, psp: &MemoryPsp) -> Result<MemoryErp, String> {
    let text = read_text(path, FIXTURES_LIMIT).map_err(|e| match e.position() {
        Some((line, col)) => format!("{}:{line}:{col}: {e}", path.display()),
        None => format!("{}: {e}", path.display()),
    })?;
    let at = |e: serde_json::Error| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column());
    let f: Fixtures = serde_json::from_str(&text).map_err(at)?;
    let emails: FixtureEmails = serde_json::from_str(&text).map_err(at)?;
    let erp = MemoryErp::new();
    for o in f.orders {
        erp.upsert(o);
    }
    for o in emails.orders {
        if let Some(e) = o.customer_email {
            erp.set_customer_email(&o.order_id, Some(&e));
        }
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
pub fn line(id: &str, status: LineStatus, amount: Money) -> OrderLine {
    OrderLine {
        line_id: id.into(),
        status,
        amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[tokio::test]
    async fn customer_email_comes_from_the_fixtures_and_is_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fixtures.json");
        let order = |id: &str, email: Option<&str>| {
            let mut v =
                serde_json::to_value(ErpOrder::known_by_id(id, Currency::EUR)).expect("order JSON");
            if let Some(e) = email {
                v["customer_email"] = serde_json::Value::from(e);
            }
            v
        };
        let doc = serde_json::json!({
            "orders": [
                order("1", Some(" kunde@example.de ")),
                order("2", None),
                order("3", Some("kunde.example.de")),
                order("4", Some("a@example.de\r\nBcc: x@evil.example")),
                order("5", Some("")),
            ]
        });
        std::fs::write(&path, doc.to_string()).expect("write fixtures");
        let (erp, _psp) = load_fixtures(&path).expect("fixtures load");
        let email = |id: &str| {
            let erp = erp.clone();
            let o = erp.order(id).expect("order");
            async move { erp.customer_email(&o).await.expect("answer") }
        };
        assert_eq!(email("1").await.as_deref(), Some("kunde@example.de"));
        assert_eq!(email("2").await, None, "no address");
        assert_eq!(email("3").await, None, "malformed: no @");
        assert_eq!(email("4").await, None, "malformed: a header in it");
        assert_eq!(email("5").await, None, "empty");

        // Set by a test, removed again; an unknown order has none; a switched-off ERP fails.
        erp.set_customer_email("2", Some("neu@example.de"));
        assert_eq!(email("2").await.as_deref(), Some("neu@example.de"));
        erp.set_customer_email("2", None);
        assert_eq!(email("2").await, None);
        let unknown = ErpOrder::known_by_id("99", Currency::EUR);
        assert_eq!(erp.customer_email(&unknown).await, Ok(None));
        erp.set_reachable(false);
        assert!(matches!(
            erp.customer_email(&unknown).await,
            Err(ErpError::Unavailable(_))
        ));

        // A customer_email that is not a string is an error at its position.
        let mut bad = order("1", None);
        bad["customer_email"] = serde_json::Value::from(7);
        let doc = serde_json::json!({ "orders": [bad] });
        std::fs::write(&path, doc.to_string()).expect("write fixtures");
        let e = load_fixtures(&path).err().expect("a number is refused");
        assert!(e.contains("fixtures.json:1:"), "{e}");
    }
}
