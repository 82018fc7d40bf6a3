//! Unzer wire types (serde) and their conversions into paybridge's model.
//!
//! Every field name and value set here follows Unzer's public SDKs and docs; the comment on each
//! item names the source. Amounts are read as decimal text (never `f64` arithmetic) and turned
//! into [`Money`] in the payment's currency only here, at the edge. Unknown states and statuses
//! map to *pending*, never to success.

use crate::ledger::RefundReason;
use crate::model::{PaymentMethod, PaymentState, PspPayment, PspTransaction, TxKind, TxStatus};
use crate::money::{Currency, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// An amount as Unzer sends it: a string with 4 decimals (`"100.0000"`), or a JSON number in
/// older examples. (java-sdk JsonBigDecimalConverter: string, 4 dp; docs examples: numbers.)
///
/// A JSON number is kept as its exact text from the reply (read through
/// [`serde_json::value::RawValue`]), never through `f64`: `99.99999999999999999` must not
/// silently become `100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireAmount {
    Text(String),
    /// The number's text exactly as it appeared in the JSON.
    Number(String),
}

impl<'de> Deserialize<'de> for WireAmount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        if text.starts_with('"') {
            return serde_json::from_str::<String>(text)
                .map(WireAmount::Text)
                .map_err(D::Error::custom);
        }
        if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
            return Ok(WireAmount::Number(text.to_string()));
        }
        Err(D::Error::custom("amount must be a string or a number"))
    }
}

/// Unzer sends at most 4 decimals (java-sdk JsonBigDecimalConverter).
const WIRE_DECIMALS: usize = 4;

/// Checks that `text` is a plain decimal `rust_decimal` reads exactly: optional leading `-`,
/// ASCII digits with at most one `.`, at least one digit, no `_`, no exponent, at most 28
/// digits (beyond that `Decimal::from_str` rounds).
pub(crate) fn exact_decimal(text: &str) -> Option<Decimal> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let mut digits = 0usize;
    let mut dots = 0usize;
    for c in body.chars() {
        match c {
            '0'..='9' => digits += 1,
            '.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || digits > 28 || dots > 1 {
        return None;
    }
    Decimal::from_str(text).ok()
}

impl WireAmount {
    /// The exact decimal. Text and JSON numbers are both read from their exact text; anything
    /// `rust_decimal` could not hold exactly (more than 28 digits, exponents, `_`) is refused,
    /// and a JSON number with more than Unzer's 4 decimals is refused rather than rounded.
    pub fn decimal(&self) -> Result<Decimal, String> {
        let (text, number) = match self {
            WireAmount::Text(s) => (s.trim(), false),
            WireAmount::Number(n) => (n.as_str(), true),
        };
        let d = exact_decimal(text).ok_or_else(|| format!("amount {text:?} is not a decimal"))?;
        if number && d.scale() as usize > WIRE_DECIMALS {
            return Err(format!(
                "amount {text:?} has more than {WIRE_DECIMALS} decimals"
            ));
        }
        Ok(d)
    }

    /// As [`Money`] in `currency`: Unzer's 4-dp zeros are trimmed first, then more decimals than
    /// the currency has are an error (never rounded).
    pub fn money(&self, currency: Currency) -> Result<Money, String> {
        let d = self.decimal()?.normalize();
        Money::new(d, currency).map_err(|e| e.to_string())
    }
}

/// A boolean flag; java-sdk ApiShipment types `isSuccess`/`isPending`/`isError` as strings, so
/// both forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WireFlag {
    Bool(bool),
    Text(String),
}

impl WireFlag {
    pub fn is_true(&self) -> bool {
        match self {
            WireFlag::Bool(b) => *b,
            WireFlag::Text(s) => s.eq_ignore_ascii_case("true"),
        }
    }
}

fn flag(f: &Option<WireFlag>) -> bool {
    f.as_ref().is_some_and(WireFlag::is_true)
}

/// `payment.state` (php-sdk Constants/PaymentState.php: id 0–6 with names).
#[derive(Debug, Clone, Deserialize)]
pub struct WireState {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

/// `payment.amount` (java-sdk JsonAmount: total, charged, canceled, remaining).
#[derive(Debug, Clone, Deserialize)]
pub struct WireAmounts {
    #[serde(default)]
    pub total: Option<WireAmount>,
    #[serde(default)]
    pub charged: Option<WireAmount>,
    #[serde(default)]
    pub canceled: Option<WireAmount>,
    #[serde(default)]
    pub remaining: Option<WireAmount>,
}

/// `resources` of a payment or transaction (java-sdk JsonResources).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireResources {
    #[serde(default)]
    pub type_id: Option<String>,
    #[serde(default)]
    pub payment_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
}

/// One entry of `payment.transactions[]` (java-sdk ApiTransaction; php-sdk Payment::updateResponseTransactions).
#[derive(Debug, Clone, Deserialize)]
pub struct WireTxEntry {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub status: Option<String>,
    pub url: String,
    pub amount: WireAmount,
    #[serde(default)]
    pub date: Option<String>,
}

/// `GET /v1/payments/{id}` (java-sdk ApiPayment: state, amount, currency, orderId, resources, transactions).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePayment {
    pub id: String,
    pub state: WireState,
    #[serde(default)]
    pub amount: Option<WireAmounts>,
    pub currency: String,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub resources: WireResources,
    #[serde(default)]
    pub transactions: Vec<WireTxEntry>,
}

/// `message` of a transaction (java-sdk JsonMessage: code, merchant, customer).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireMessage {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub merchant: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
}

/// `processing` of a transaction (java-sdk JsonProcessing: holder, iban, bic, descriptor, shortId, …).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireProcessing {
    #[serde(default)]
    pub holder: Option<String>,
    #[serde(default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub bic: Option<String>,
    #[serde(default)]
    pub descriptor: Option<String>,
    #[serde(default)]
    pub short_id: Option<String>,
    #[serde(default)]
    pub unique_id: Option<String>,
}

/// One entry of an error object's `errors[]` (java-sdk JsonError: code, merchantMessage, customerMessage).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub merchant_message: Option<String>,
    #[serde(default)]
    pub customer_message: Option<String>,
}

/// A reply to a transaction call or fetch: either a transaction object (java-sdk ApiInitPayment,
/// ApiCancel, ApiShipment) or an error object (java-sdk JsonErrorObject) — one shape with
/// optional fields, because Unzer can send errors with HTTP 2xx (php-sdk HttpService::handleErrors).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReply {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub is_success: Option<WireFlag>,
    #[serde(default)]
    pub is_pending: Option<WireFlag>,
    #[serde(default)]
    pub is_error: Option<WireFlag>,
    #[serde(default)]
    pub is_resumed: Option<WireFlag>,
    #[serde(default)]
    pub message: Option<WireMessage>,
    #[serde(default)]
    pub amount: Option<WireAmount>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub invoice_id: Option<String>,
    #[serde(default)]
    pub payment_reference: Option<String>,
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(default)]
    pub processing: Option<WireProcessing>,
    #[serde(default)]
    pub errors: Vec<WireError>,
}

/// What a reply says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// An error object, or a transaction in error state: code and merchant message.
    Error {
        code: String,
        message: String,
    },
    Success {
        tx_id: String,
    },
    Pending {
        tx_id: String,
    },
    /// Neither flag set: not trusted as success.
    Unclear {
        tx_id: Option<String>,
    },
}

impl WireReply {
    /// Classifies by `errors[]` first (errors can come with 2xx), then `isError`, then the
    /// transaction flags (java-sdk TransactionStatus: isSuccess/isPending/isError/isResumed).
    pub fn kind(&self) -> ReplyKind {
        if let Some(e) = self.errors.first() {
            return ReplyKind::Error {
                code: e.code.clone().unwrap_or_else(|| "UNKNOWN".into()),
                message: e
                    .merchant_message
                    .clone()
                    .or_else(|| e.customer_message.clone())
                    .unwrap_or_default(),
            };
        }
        if flag(&self.is_error) {
            let m = self.message.clone().unwrap_or_default();
            return ReplyKind::Error {
                code: m.code.unwrap_or_else(|| "UNKNOWN".into()),
                message: m.merchant.or(m.customer).unwrap_or_default(),
            };
        }
        match self.id.clone() {
            Some(tx_id) if flag(&self.is_success) => ReplyKind::Success { tx_id },
            // resumed: the customer came back, not final yet (php-sdk TransactionStatus::STATUS_RESUMED)
            Some(tx_id) if flag(&self.is_pending) || flag(&self.is_resumed) => {
                ReplyKind::Pending { tx_id }
            }
            tx_id => ReplyKind::Unclear { tx_id },
        }
    }

    /// Transaction status from the flags; unknown → pending.
    pub fn status(&self) -> TxStatus {
        if flag(&self.is_error) || !self.errors.is_empty() {
            TxStatus::Error
        } else if flag(&self.is_success) {
            TxStatus::Success
        } else {
            TxStatus::Pending
        }
    }

    /// Prepayment/invoice bank details from `processing` (php-sdk Charge::getHolder/getIban/getBic/getDescriptor).
    pub fn bank_details(&self) -> Option<crate::model::BankDetails> {
        let p = self.processing.as_ref()?;
        let take = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(crate::model::BankDetails {
            holder: take(&p.holder)?,
            iban: take(&p.iban)?,
            bic: take(&p.bic)?,
            descriptor: take(&p.descriptor)?,
        })
    }

    /// Whether this transaction carries our reference (php-sdk Cancellation/Charge: paymentReference, invoiceId, orderId).
    pub fn carries(&self, reference: &str) -> bool {
        [&self.payment_reference, &self.invoice_id, &self.order_id]
            .iter()
            .any(|v| v.as_deref() == Some(reference))
    }
}

/// `POST /v1/payments/{id}/charges` body (php-sdk Charge: amount, orderId, invoiceId, paymentReference).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    pub payment_reference: String,
}

/// `POST …/cancels` body (php-sdk Cancellation: amount, reasonCode, paymentReference).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'static str>,
    pub payment_reference: String,
}

/// `POST /v1/payments/{id}/shipments` body (php-sdk Shipment: invoiceId required, API.360.100.025).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentRequest {
    pub invoice_id: String,
}

/// The cancel reason code (php-sdk Constants/CancelReasonCodes.php: CANCEL, RETURN, CREDIT).
pub fn reason_code(r: RefundReason) -> &'static str {
    match r {
        RefundReason::Cancel => "CANCEL",
        RefundReason::Return => "RETURN",
        RefundReason::Credit => "CREDIT",
    }
}

/// An amount in Unzer's request form: decimal major units with the currency's exponent
/// (`12.30` EUR, `500` JPY, `1.234` KWD); never more than Unzer's 4 decimals (unzerdev/shopware6#9).
pub fn amount_text(m: Money) -> String {
    m.amount().to_string()
}

/// Payment state by numeric id (php-sdk Constants/PaymentState.php); unknown ids → pending.
pub fn payment_state(id: i64) -> PaymentState {
    match id {
        1 => PaymentState::Completed,
        2 => PaymentState::Canceled,
        3 => PaymentState::Partly,
        4 => PaymentState::PaymentReview,
        5 => PaymentState::Chargeback,
        6 => PaymentState::Create,
        _ => PaymentState::Pending,
    }
}

/// Transaction type (php-sdk Constants/TransactionTypes.php); `preauthorize` (java-sdk
/// Preauthorization) counts as an authorization; payouts and SCA steps move no money we manage.
pub fn tx_kind(wire: &str) -> Option<TxKind> {
    match wire {
        "authorize" | "preauthorize" => Some(TxKind::Authorize),
        "charge" => Some(TxKind::Charge),
        "cancel-authorize" | "cancel-preauthorize" => Some(TxKind::CancelAuthorize),
        "cancel-charge" => Some(TxKind::CancelCharge),
        "shipment" => Some(TxKind::Shipment),
        "chargeback" => Some(TxKind::Chargeback),
        _ => None,
    }
}

/// Transaction status (php-sdk Constants/TransactionStatus.php); `resumed` and unknown → pending.
pub fn tx_status(wire: Option<&str>) -> TxStatus {
    match wire {
        Some("success") => TxStatus::Success,
        Some("error") => TxStatus::Error,
        _ => TxStatus::Pending,
    }
}

/// The payment method from a type id such as `s-crd-88xu7qjboupc` by its infix (php-sdk
/// Constants/IdStrings.php). Unzer has one type, `piv`, for both "Unzer Invoice (Paylater)" and
/// "Unzer Paylater Invoice", so [`PaymentMethod::InvoicePaylater`] is never produced here; the
/// two behave the same towards Unzer. Deprecated older infixes map to their successors
/// (`ivg`/`ivf` → invoice secured, `ddg` → direct debit secured).
pub fn method_from_type_id(type_id: &str) -> Option<PaymentMethod> {
    let infix = type_id.split('-').nth(1)?;
    Some(match infix {
        "crd" => PaymentMethod::Card,
        "ppl" => PaymentMethod::Paypal,
        "apl" => PaymentMethod::ApplePay,
        "sft" => PaymentMethod::Sofort,
        "eps" => PaymentMethod::Eps,
        "idl" => PaymentMethod::Ideal,
        "gro" => PaymentMethod::Giropay,
        "ali" => PaymentMethod::Alipay,
        "p24" => PaymentMethod::Przelewy24,
        "ppy" => PaymentMethod::Prepayment,
        "ivc" => PaymentMethod::Invoice,
        "ivs" | "ivg" | "ivf" => PaymentMethod::InvoiceSecured,
        "piv" => PaymentMethod::PaylaterInvoice,
        "pit" => PaymentMethod::PaylaterInstallment,
        "pdd" => PaymentMethod::PaylaterDirectDebit,
        "dds" | "ddg" => PaymentMethod::SepaDirectDebitSecured,
        _ => return None,
    })
}

/// Paylater types take payment-level cancels only (php-sdk CancelService: no direct payment
/// cancel for Paylater; docs "Manage Unzer Invoice (upl)").
pub fn is_paylater(m: PaymentMethod) -> bool {
    matches!(
        m,
        PaymentMethod::PaylaterInvoice
            | PaymentMethod::InvoicePaylater
            | PaymentMethod::PaylaterInstallment
            | PaymentMethod::PaylaterDirectDebit
    )
}

/// Types whose initial charge stays pending until the customer pays (docs "Manage Unzer
/// Prepayment"; php-sdk BasePaymentType::isInvoiceType).
pub fn pending_initial_charge(m: PaymentMethod) -> bool {
    matches!(
        m,
        PaymentMethod::Prepayment | PaymentMethod::Invoice | PaymentMethod::InvoiceSecured
    )
}

/// A transaction's `date` (`yyyy-MM-dd HH:mm:ss`, no zone: reference unzer.md §fetch; the
/// zone is not documented). Read as German local time, the earlier of the two plausible
/// readings (UTC would be up to two hours later), so an authorization's age is never
/// underestimated. `None` for a missing or unreadable date.
pub fn tx_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let local = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    let berlin = |t: chrono::NaiveDateTime| t.and_local_timezone(chrono_tz::Europe::Berlin);
    // A time inside the spring-forward gap does not exist locally: read it an hour earlier.
    berlin(local)
        .earliest()
        .or_else(|| berlin(local - chrono::Duration::hours(1)).earliest())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One transaction of a fetched payment, with the parts of its url the connector needs.
#[derive(Debug, Clone)]
pub struct TxRef {
    pub kind: TxKind,
    pub status: TxStatus,
    pub amount: Money,
    /// Last url segment (`s-chg-1`, `s-cnl-1`).
    pub id: String,
    pub url: url::Url,
    /// For a charge cancel on one charge (`…/charges/{chgId}/cancels/{cnlId}`): that charge id.
    pub parent_charge: Option<String>,
    /// The entry's `date`, when present and readable ([`tx_date`]).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A fetched payment: the model view plus the url-level detail behind it.
#[derive(Debug, Clone)]
pub struct PaymentView {
    pub payment: PspPayment,
    pub txs: Vec<TxRef>,
}

impl TryFrom<WirePayment> for PaymentView {
    type Error = String;

    fn try_from(w: WirePayment) -> Result<Self, Self::Error> {
        let currency = Currency::from_code(&w.currency).map_err(|e| e.to_string())?;
        let method = w.method()?;
        w.check_sums()?;
        let mut txs = Vec::new();
        for e in &w.transactions {
            if let Some(tx) = TxRef::from_entry(e, currency, &w.id)? {
                txs.push(tx);
            }
        }
        let payment = PspPayment {
            payment_id: w.id,
            state: payment_state(w.state.id),
            method,
            currency,
            transactions: txs
                .iter()
                .map(|t| PspTransaction {
                    at: t.at,
                    id: t.id.clone(),
                    kind: t.kind,
                    status: t.status,
                    amount: t.amount,
                    reference: None,
                })
                .collect(),
            bank_details: None,
            totals_only: false,
        };
        Ok(PaymentView { payment, txs })
    }
}

impl WirePayment {
    /// The payment method by `resources.typeId`; an error when it is missing or not supported.
    fn method(&self) -> Result<PaymentMethod, String> {
        let type_id = self
            .resources
            .type_id
            .as_deref()
            .ok_or_else(|| format!("payment {} has no resources.typeId", self.id))?;
        method_from_type_id(type_id).ok_or_else(|| {
            format!(
                "payment {}: payment type {type_id:?} is not one paybridge supports",
                self.id
            )
        })
    }

    /// Refuses a reply whose payment-level `total`, `charged` or `canceled` is unreadable or
    /// negative.
    fn check_sums(&self) -> Result<(), String> {
        // Payment-level sums (java-sdk JsonAmount) are never negative; a negative one is a broken
        // reply, not something to compute with. `remaining` is left out: after an overpayment
        // (prepayment receipt above the total) it can legitimately go below zero.
        let Some(a) = &self.amount else {
            return Ok(());
        };
        for (name, v) in [
            ("total", &a.total),
            ("charged", &a.charged),
            ("canceled", &a.canceled),
        ] {
            let Some(v) = v else { continue };
            let d = v
                .decimal()
                .map_err(|e| format!("payment {}: amount.{name}: {e}", self.id))?;
            if d.is_sign_negative() && !d.is_zero() {
                return Err(format!("payment {}: negative amount.{name}", self.id));
            }
        }
        Ok(())
    }
}

impl TxRef {
    /// One `transactions[]` entry of payment `payment_id` in `currency`; `None` for a type
    /// paybridge does not track, an error for an unreadable url or amount or a negative amount.
    fn from_entry(
        e: &WireTxEntry,
        currency: Currency,
        payment_id: &str,
    ) -> Result<Option<TxRef>, String> {
        let Some(kind) = tx_kind(&e.kind) else {
            tracing::debug!(payment = %payment_id, kind = %e.kind, "skipping transaction type paybridge does not track");
            return Ok(None);
        };
        let url =
            url::Url::parse(&e.url).map_err(|err| format!("transaction url {:?}: {err}", e.url))?;
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        let id = segments
            .last()
            .map(|s| s.to_string())
            .ok_or_else(|| format!("transaction url {:?} has no id", e.url))?;
        // `…/charges/{chgId}/cancels/{cnlId}` names its charge; `…/charges/cancels/{cnlId}` does not (php-sdk IdService::isPaymentCancellation).
        let parent_charge = segments
            .windows(3)
            .find(|w| w[0] == "charges" && w[2] == "cancels")
            .map(|w| w[1].to_string());
        let amount = e
            .amount
            .money(currency)
            .map_err(|err| format!("transaction {id}: {err}"))?;
        if amount.is_negative() {
            return Err(format!("transaction {id}: negative amount {amount}"));
        }
        Ok(Some(TxRef {
            kind,
            status: tx_status(e.status.as_deref()),
            amount,
            id,
            url,
            parent_charge,
            at: e.date.as_deref().and_then(tx_date),
        }))
    }
}

#[cfg(test)]
mod tests;
