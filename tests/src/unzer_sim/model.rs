//! The simulator's payments: transactions, Unzer's amount and state rules, and the JSON shapes
//! of the payment, transaction and error resources.
//!
//! Amount semantics follow `shared/reference/unzer.md` §3.2 (php-sdk integration tests): a
//! reversal lowers `total`, a refund raises `canceled` and lowers `charged`, and always
//! `remaining = total − charged − canceled`. States are recomputed from the transactions after
//! every change (php-sdk Constants/PaymentState.php ids and names).

use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Paylater types: payment-level cancels only (php-sdk CancelService; docs "Manage Unzer Invoice (upl)").
pub const PAYLATER: &[&str] = &["piv", "pit", "pdd"];
/// Types whose initial charge stays pending until money arrives (docs "Manage Unzer Prepayment"; php-sdk BasePaymentType::isInvoiceType).
pub const PENDING_INITIAL: &[&str] = &["ppy", "ivc", "ivs", "ivg", "ivf"];
/// Types that take `POST /shipments` (docs "Manage Unzer Invoice Secured"; jtl5 ships only InvoiceSecured/InstallmentSecured).
pub const SHIPPABLE: &[&str] = &["ivs", "ivg", "ivf", "ins", "hdd"];
/// Cancel reason codes (php-sdk Constants/CancelReasonCodes.php).
pub const REASON_CODES: &[&str] = &["CANCEL", "RETURN", "CREDIT"];

/// Transaction type (php-sdk Constants/TransactionTypes.php).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxType {
    Authorize,
    Charge,
    CancelAuthorize,
    CancelCharge,
    Shipment,
    Chargeback,
}

impl TxType {
    pub fn wire(self) -> &'static str {
        match self {
            TxType::Authorize => "authorize",
            TxType::Charge => "charge",
            TxType::CancelAuthorize => "cancel-authorize",
            TxType::CancelCharge => "cancel-charge",
            TxType::Shipment => "shipment",
            TxType::Chargeback => "chargeback",
        }
    }
}

/// Transaction status (php-sdk Constants/TransactionStatus.php).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Success,
    Pending,
    Error,
}

impl TxState {
    pub fn wire(self) -> &'static str {
        match self {
            TxState::Success => "success",
            TxState::Pending => "pending",
            TxState::Error => "error",
        }
    }
}

/// Transfer data on a prepayment/invoice initial charge (java-sdk JsonProcessing: holder, iban, bic, descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankData {
    pub holder: String,
    pub iban: String,
    pub bic: String,
    pub descriptor: String,
}

/// Reference fields a merchant can put on a transaction (php-sdk Charge/Cancellation/Shipment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    pub order_id: Option<String>,
    pub invoice_id: Option<String>,
    pub payment_reference: Option<String>,
    pub reason_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimTx {
    pub id: String,
    pub kind: TxType,
    pub status: TxState,
    pub amount: Decimal,
    /// `/v1/payments/{pid}/…/{id}`: the fetch path and the `url` in `transactions[]`.
    pub path: String,
    pub refs: Refs,
    pub bank: Option<BankData>,
    pub date: String,
    pub short_id: String,
}

/// A refusal: HTTP status, Unzer error code, merchant message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// `payment.amount` (java-sdk JsonAmount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub total: Decimal,
    pub charged: Decimal,
    pub canceled: Decimal,
    pub remaining: Decimal,
}

#[derive(Debug, Clone)]
pub struct SimPayment {
    pub id: String,
    pub public_key: String,
    pub type_id: String,
    pub currency: String,
    pub order_id: Option<String>,
    pub txs: Vec<SimTx>,
    seq: HashMap<&'static str, u32>,
}

/// An amount as Unzer shows it: a string with 4 decimals (java-sdk JsonBigDecimalConverter).
pub fn fmt4(d: Decimal) -> String {
    let mut d = d;
    d.rescale(4);
    d.to_string()
}

pub fn now() -> String {
    wire_date(chrono::Utc::now())
}

/// A transaction's `date` as the docs' examples show it: `yyyy-MM-dd HH:mm:ss`, no zone. The
/// docs do not name the zone; the simulator writes German local time (Unzer is a German PSP),
/// which the connector also assumes (reference unzer.md §fetch, marked as an inference).
pub fn wire_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::Berlin)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn sum(txs: impl Iterator<Item = Decimal>) -> Decimal {
    txs.fold(Decimal::ZERO, |a, b| a + b)
}

impl SimPayment {
    pub fn new(
        id: String,
        public_key: String,
        type_id: String,
        currency: String,
        order_id: Option<String>,
    ) -> SimPayment {
        SimPayment {
            id,
            public_key,
            type_id,
            currency,
            order_id,
            txs: Vec::new(),
            seq: HashMap::new(),
        }
    }

    /// The type infix (`crd`, `ppy`, …; php-sdk Constants/IdStrings.php).
    pub fn infix(&self) -> &str {
        self.type_id.split('-').nth(1).unwrap_or("")
    }

    fn env(&self) -> &str {
        self.id.split('-').next().unwrap_or("s")
    }

    pub fn is_paylater(&self) -> bool {
        PAYLATER.contains(&self.infix())
    }

    /// Transaction ids are numbered per payment and type (`s-chg-1`, `s-chg-2`, `s-cnl-1`; docs examples).
    fn next_id(&mut self, infix: &'static str) -> String {
        let n = self.seq.entry(infix).or_insert(0);
        *n += 1;
        let n = *n;
        format!("{}-{infix}-{n}", self.env())
    }

    pub fn initial(&self) -> Option<&SimTx> {
        self.txs
            .iter()
            .find(|t| matches!(t.kind, TxType::Authorize | TxType::Charge))
    }

    pub fn tx_by_path(&self, path: &str) -> Option<&SimTx> {
        self.txs.iter().find(|t| t.path == path)
    }

    fn sum_of(&self, kind: TxType) -> Decimal {
        sum(self
            .txs
            .iter()
            .filter(|t| t.kind == kind && t.status == TxState::Success)
            .map(|t| t.amount))
    }

    pub fn amounts(&self) -> Amounts {
        let base = match self.initial() {
            Some(t) if t.status != TxState::Error => t.amount,
            _ => Decimal::ZERO,
        };
        let total = base - self.sum_of(TxType::CancelAuthorize);
        let charged_gross = self.sum_of(TxType::Charge);
        let refunded = self.sum_of(TxType::CancelCharge);
        let charged = charged_gross - refunded;
        Amounts {
            total,
            charged,
            canceled: refunded,
            remaining: total - charged - refunded,
        }
    }

    /// State id and name (php-sdk Constants/PaymentState.php), recomputed from the transactions.
    pub fn state(&self) -> (u8, &'static str) {
        let Some(initial) = self.initial() else {
            return (6, "create");
        };
        if initial.status == TxState::Error {
            return (2, "canceled");
        }
        if self
            .txs
            .iter()
            .any(|t| t.kind == TxType::Chargeback && t.status == TxState::Success)
        {
            return (5, "chargeback");
        }
        let a = self.amounts();
        let charged_gross = self.sum_of(TxType::Charge);
        if a.remaining < Decimal::ZERO {
            // overpaid (docs "Manage Unzer Prepayment": payment_review when the customer paid too much)
            (4, "payment review")
        } else if a.total.is_zero()
            || (a.remaining.is_zero() && a.charged.is_zero() && a.canceled > Decimal::ZERO)
        {
            (2, "canceled")
        } else if a.remaining.is_zero() && charged_gross > Decimal::ZERO {
            (1, "completed")
        } else if charged_gross > Decimal::ZERO {
            (3, "partly")
        } else {
            (0, "pending")
        }
    }

    fn push(
        &mut self,
        kind: TxType,
        status: TxState,
        amount: Decimal,
        path: String,
        id: String,
        refs: Refs,
    ) -> String {
        let short = format!(
            "{:04}.{:04}.{:04}",
            self.txs.len() + 1,
            amount.trunc().to_string().len(),
            self.id.len()
        );
        self.txs.push(SimTx {
            id: id.clone(),
            kind,
            status,
            amount,
            path,
            refs,
            bank: None,
            date: now(),
            short_id: short,
        });
        id
    }

    /// The shop's initial transaction (what checkout did before paybridge sees the payment).
    pub fn start(
        &mut self,
        kind: TxType,
        status: TxState,
        amount: Decimal,
        bank: Option<BankData>,
    ) -> String {
        let (infix, segment) = match kind {
            TxType::Authorize => ("aut", "authorize"),
            _ => ("chg", "charges"),
        };
        let id = self.next_id(infix);
        let path = format!("/v1/payments/{}/{segment}/{id}", self.id);
        let refs = Refs {
            order_id: self.order_id.clone(),
            ..Refs::default()
        };
        self.push(kind, status, amount, path, id.clone(), refs);
        if let Some(t) = self.txs.last_mut() {
            t.bank = bank;
        }
        id
    }

    /// Capture: `POST /payments/{id}/charges` on an authorized payment (php-sdk ChargeAfterAuthorizationTest).
    pub fn charge(
        &mut self,
        amount: Option<Decimal>,
        status: TxState,
        refs: Refs,
    ) -> Result<String, Refusal> {
        match self.initial() {
            Some(t) if t.kind == TxType::Authorize && t.status == TxState::Success => {}
            Some(t) if t.kind == TxType::Authorize => {
                return Err(refuse(
                    400,
                    "API.330.000.004",
                    format!(
                        "charge not allowed: authorization {} is {}",
                        t.id,
                        t.status.wire()
                    ),
                ));
            }
            _ => {
                return Err(refuse(
                    400,
                    "API.330.000.004",
                    "charge not allowed: the payment has no authorization",
                ));
            }
        }
        let a = self.amounts();
        if a.total.is_zero() || a.remaining <= Decimal::ZERO {
            return Err(refuse(
                400,
                "API.330.000.004",
                "charge not allowed: nothing remains to be charged",
            ));
        }
        let amount = amount.unwrap_or(a.remaining);
        if amount > a.remaining {
            // charged amount higher than expected (php-sdk ApiResponseCodes::API_ERROR_CHARGED_AMOUNT_HIGHER_THAN_EXPECTED)
            return Err(refuse(
                400,
                "API.330.100.007",
                format!(
                    "charged amount {} is higher than the remaining {}",
                    fmt4(amount),
                    fmt4(a.remaining)
                ),
            ));
        }
        let id = self.next_id("chg");
        let path = format!("/v1/payments/{}/charges/{id}", self.id);
        Ok(self.push(TxType::Charge, status, amount, path, id, refs))
    }

    /// Reversal: `POST …/authorize/{autId}/cancels` or payment-level `…/authorize/cancels`.
    pub fn cancel_authorization(
        &mut self,
        aut: Option<&str>,
        amount: Option<Decimal>,
        status: TxState,
        refs: Refs,
    ) -> Result<String, Refusal> {
        if aut.is_some() && self.is_paylater() {
            // [INF, strict] Paylater cancels are documented at payment level only (php-sdk CancelService).
            return Err(refuse(
                400,
                "API.340.000.004",
                "cancel not allowed: use the payment-level cancel for Paylater",
            ));
        }
        let auth = match self.initial() {
            Some(t) if t.kind == TxType::Authorize && t.status == TxState::Success => t.id.clone(),
            _ => {
                return Err(refuse(
                    400,
                    "API.340.000.004",
                    "cancel not allowed: the payment has no successful authorization",
                ));
            }
        };
        if let Some(a) = aut
            && a != auth
        {
            return Err(refuse(
                404,
                "API.340.000.004",
                format!("authorization {a} not found"),
            ));
        }
        let a = self.amounts();
        if a.total.is_zero() {
            return Err(refuse(
                400,
                "API.340.100.014",
                "the authorization is already cancelled",
            ));
        }
        let charged_gross = self.sum_of(TxType::Charge);
        if amount.is_none() && self.is_paylater() && charged_gross > Decimal::ZERO {
            // a full reversal after a partial charge is refused (php-sdk test reversalOnChargedPaymentThrowsException)
            return Err(refuse(
                400,
                "API.340.000.004",
                "cancel not allowed: the payment is partly charged; send an amount",
            ));
        }
        let amount = amount.unwrap_or(a.remaining);
        if a.remaining <= Decimal::ZERO || amount > a.remaining {
            return Err(refuse(
                400,
                "API.340.000.004",
                format!(
                    "cancel not allowed: {} exceeds the remaining {}",
                    fmt4(amount),
                    fmt4(a.remaining)
                ),
            ));
        }
        let id = self.next_id("cnl");
        let path = match aut {
            Some(aut) => format!("/v1/payments/{}/authorize/{aut}/cancels/{id}", self.id),
            None => format!("/v1/payments/{}/authorize/cancels/{id}", self.id),
        };
        Ok(self.push(TxType::CancelAuthorize, status, amount, path, id, refs))
    }

    /// Cancel on a charge: `POST …/charges/{chgId}/cancels` (refund, or reversal of a pending
    /// prepayment/invoice initial charge) or payment-level `…/charges/cancels` (refund).
    pub fn cancel_charge(
        &mut self,
        chg: Option<&str>,
        amount: Option<Decimal>,
        status: TxState,
        refs: Refs,
    ) -> Result<String, Refusal> {
        if let Some(code) = refs.reason_code.as_deref()
            && !REASON_CODES.contains(&code)
        {
            return Err(refuse(
                400,
                "API.500.300.999",
                format!("reasonCode {code:?} is not one of CANCEL, RETURN, CREDIT"),
            ));
        }
        let Some(chg) = chg else {
            return self.refund_payment(amount, status, refs);
        };
        if self.is_paylater() {
            // [INF, strict] Paylater refunds are documented at payment level only (php-sdk PaylaterCancelTest).
            return Err(refuse(
                400,
                "API.340.000.004",
                "cancel not allowed: use the payment-level cancel for Paylater",
            ));
        }
        let Some(charge) = self
            .txs
            .iter()
            .find(|t| t.kind == TxType::Charge && t.id == chg)
            .cloned()
        else {
            return Err(refuse(
                404,
                "API.340.000.004",
                format!("charge {chg} not found"),
            ));
        };
        let is_initial = self.initial().is_some_and(|t| t.id == charge.id);
        let prefix = format!("/v1/payments/{}/charges/{chg}/cancels/", self.id);
        if is_initial
            && charge.status == TxState::Pending
            && PENDING_INITIAL.contains(&self.infix())
        {
            // Reversal before receipt, capped at initial − receipts − already cancelled (php-sdk CancelService::calculateMaxReversalAmount);
            // it shows up as `cancel-authorize` (php-sdk #59/#60).
            let max =
                charge.amount - self.sum_of(TxType::Charge) - self.sum_of(TxType::CancelAuthorize);
            if max <= Decimal::ZERO {
                return Err(refuse(
                    400,
                    "API.340.100.014",
                    "nothing left to cancel on the initial charge",
                ));
            }
            let amount = amount.unwrap_or(max);
            if amount > max {
                return Err(refuse(
                    400,
                    "API.340.000.004",
                    format!(
                        "cancel not allowed: {} exceeds the open {}",
                        fmt4(amount),
                        fmt4(max)
                    ),
                ));
            }
            let id = self.next_id("cnl");
            return Ok(self.push(
                TxType::CancelAuthorize,
                status,
                amount,
                format!("{prefix}{id}"),
                id,
                refs,
            ));
        }
        if charge.status != TxState::Success {
            return Err(refuse(
                400,
                "API.340.000.004",
                format!(
                    "cancel not allowed: charge {chg} is {}",
                    charge.status.wire()
                ),
            ));
        }
        if self.infix() == "ivs" && refs.reason_code.is_none() {
            // reason code is mandatory for invoice-secured refunds (php-sdk ApiResponseCodes API.340.100.024; java-sdk CHANGELOG)
            return Err(refuse(
                400,
                "API.340.100.024",
                "cancel reason code is missing",
            ));
        }
        let refunded = sum(self
            .txs
            .iter()
            .filter(|t| {
                t.kind == TxType::CancelCharge
                    && t.status == TxState::Success
                    && t.path.starts_with(&prefix)
            })
            .map(|t| t.amount));
        let open = charge.amount - refunded;
        if open <= Decimal::ZERO {
            return Err(refuse(
                400,
                "API.340.100.014",
                format!("charge {chg} is already cancelled"),
            ));
        }
        let amount = amount.unwrap_or(open);
        if amount > open {
            return Err(refuse(
                400,
                "API.340.000.004",
                format!(
                    "cancel not allowed: {} exceeds the refundable {}",
                    fmt4(amount),
                    fmt4(open)
                ),
            ));
        }
        let id = self.next_id("cnl");
        Ok(self.push(
            TxType::CancelCharge,
            status,
            amount,
            format!("{prefix}{id}"),
            id,
            refs,
        ))
    }

    fn refund_payment(
        &mut self,
        amount: Option<Decimal>,
        status: TxState,
        refs: Refs,
    ) -> Result<String, Refusal> {
        let charged_gross = self.sum_of(TxType::Charge);
        if charged_gross.is_zero() {
            return Err(refuse(
                400,
                "API.340.000.004",
                "cancel not allowed: nothing was charged",
            ));
        }
        let open = charged_gross - self.sum_of(TxType::CancelCharge);
        if open <= Decimal::ZERO {
            return Err(refuse(
                400,
                "API.340.100.014",
                "all charges are already cancelled",
            ));
        }
        let amount = amount.unwrap_or(open);
        if amount > open {
            return Err(refuse(
                400,
                "API.340.000.004",
                format!(
                    "cancel not allowed: {} exceeds the refundable {}",
                    fmt4(amount),
                    fmt4(open)
                ),
            ));
        }
        let id = self.next_id("cnl");
        let path = format!("/v1/payments/{}/charges/cancels/{id}", self.id);
        Ok(self.push(TxType::CancelCharge, status, amount, path, id, refs))
    }

    /// Shipment: `POST …/shipments` with invoiceId (legacy secured types; docs "Manage Unzer Invoice Secured").
    pub fn ship(&mut self, refs: Refs) -> Result<String, Refusal> {
        if refs.invoice_id.as_deref().is_none_or(str::is_empty) {
            // shipping requires an invoice id (php-sdk ApiResponseCodes API.360.100.025)
            return Err(refuse(
                400,
                "API.360.100.025",
                "shipment requires an invoiceId",
            ));
        }
        if !SHIPPABLE.contains(&self.infix()) {
            // ship not allowed, e.g. on prepayment (php-sdk PrepaymentTest; API.360.000.004)
            return Err(refuse(
                400,
                "API.360.000.004",
                format!("ship not allowed for payment type {}", self.infix()),
            ));
        }
        if self.state().0 == 2 {
            return Err(refuse(
                400,
                "API.360.000.004",
                "ship not allowed: the payment is cancelled",
            ));
        }
        if self
            .txs
            .iter()
            .any(|t| t.kind == TxType::Shipment && t.status == TxState::Success)
        {
            // repeated shipment: insurance already activated (php-sdk ApiResponseCodes COR.700.400.800)
            return Err(refuse(
                400,
                "COR.700.400.800",
                "insurance already activated",
            ));
        }
        let amount = self.amounts().total;
        let id = self.next_id("shp");
        let path = format!("/v1/payments/{}/shipments/{id}", self.id);
        Ok(self.push(TxType::Shipment, TxState::Success, amount, path, id, refs))
    }

    /// A customer's transfer matched by Unzer: a new successful charge (docs "Manage Unzer Prepayment").
    pub fn receipt(&mut self, amount: Decimal) -> String {
        let id = self.next_id("chg");
        let path = format!("/v1/payments/{}/charges/{id}", self.id);
        self.push(
            TxType::Charge,
            TxState::Success,
            amount,
            path,
            id,
            Refs::default(),
        )
    }

    /// A chargeback on the last successful charge (`…/charges/{chgId}/chargebacks/{cbkId}`; php-sdk#156).
    pub fn chargeback(&mut self, amount: Decimal) -> Option<String> {
        let chg = self
            .txs
            .iter()
            .rev()
            .find(|t| t.kind == TxType::Charge && t.status == TxState::Success)?
            .id
            .clone();
        let id = self.next_id("cbk");
        let path = format!("/v1/payments/{}/charges/{chg}/chargebacks/{id}", self.id);
        Some(self.push(
            TxType::Chargeback,
            TxState::Success,
            amount,
            path,
            id,
            Refs::default(),
        ))
    }

    /// `GET /v1/payments/{id}` (java-sdk ApiPayment; docs "Check payment details").
    pub fn to_json(&self, url_base: &str) -> Value {
        let (state_id, state_name) = self.state();
        let a = self.amounts();
        json!({
            "id": self.id,
            "state": {"id": state_id, "name": state_name},
            "amount": {
                "total": fmt4(a.total),
                "charged": fmt4(a.charged),
                "canceled": fmt4(a.canceled),
                "remaining": fmt4(a.remaining),
            },
            "currency": self.currency,
            "orderId": self.order_id.clone().unwrap_or_default(),
            "invoiceId": "",
            "resources": self.resources(),
            "transactions": self.txs.iter().map(|t| json!({
                "date": t.date,
                "type": t.kind.wire(),
                "status": t.status.wire(),
                "url": format!("{url_base}{}", t.path),
                "amount": fmt4(t.amount),
            })).collect::<Vec<_>>(),
        })
    }

    fn resources(&self) -> Value {
        // java-sdk JsonResources
        json!({
            "customerId": "",
            "paymentId": self.id,
            "basketId": "",
            "metadataId": "",
            "payPageId": "",
            "traceId": format!("{:032x}", self.id.len() as u128 * 7919 + self.txs.len() as u128),
            "typeId": self.type_id,
        })
    }

    /// A transaction resource (java-sdk ApiInitPayment / ApiCancel / ApiShipment).
    pub fn tx_json(&self, t: &SimTx) -> Value {
        let (code, merchant) = match t.status {
            // success / pending codes (docs examples: COR.000.100.112; php-sdk ApiResponseCodes::CORE_TRANSACTION_PENDING)
            TxState::Success => (
                "COR.000.100.112",
                "Request processed by the Unzer simulator (test mode)",
            ),
            TxState::Pending => ("COR.000.200.000", "Transaction pending"),
            TxState::Error => ("COR.000.000.999", "Transaction failed"),
        };
        let mut processing = json!({
            "uniqueId": format!("31HA07BC8{:024X}", t.path.len() * 1_000 + self.txs.len()),
            "shortId": t.short_id,
            "traceId": format!("{:032x}", t.path.len() as u128 * 104_729),
        });
        if let (Some(b), Some(p)) = (&t.bank, processing.as_object_mut()) {
            p.insert("holder".into(), json!(b.holder));
            p.insert("iban".into(), json!(b.iban));
            p.insert("bic".into(), json!(b.bic));
            p.insert("descriptor".into(), json!(b.descriptor));
        }
        let mut v = json!({
            "id": t.id,
            "isSuccess": t.status == TxState::Success,
            "isPending": t.status == TxState::Pending,
            "isResumed": false,
            "isError": t.status == TxState::Error,
            "redirectUrl": "",
            "message": {"code": code, "merchant": merchant, "customer": merchant},
            "amount": fmt4(t.amount),
            "currency": self.currency,
            "returnUrl": "",
            "date": t.date,
            "orderId": t.refs.order_id.clone().unwrap_or_default(),
            "invoiceId": t.refs.invoice_id.clone().unwrap_or_default(),
            "paymentReference": t.refs.payment_reference.clone().unwrap_or_default(),
            "resources": self.resources(),
            "processing": processing,
        });
        if matches!(t.kind, TxType::CancelAuthorize | TxType::CancelCharge)
            && let Some(o) = v.as_object_mut()
        {
            o.insert(
                "reasonCode".into(),
                json!(t.refs.reason_code.clone().unwrap_or_default()),
            );
        }
        v
    }
}

/// The error object (docs "Error handling"; java-sdk JsonErrorObject/JsonError): `isError` and
/// `errors[{code, merchantMessage, customerMessage}]`.
pub fn error_json(env: &str, seq: u64, url: &str, code: &str, merchant: &str) -> Value {
    json!({
        "id": format!("{env}-err-{:024x}", seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        "isSuccess": false,
        "isPending": false,
        "isError": true,
        "url": url,
        "timestamp": now(),
        "traceId": format!("{:032x}", seq.wrapping_mul(2_654_435_761)),
        "errors": [{
            "code": code,
            "merchantMessage": merchant,
            "customerMessage": "An error occurred. Please contact the merchant.",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn payment(infix: &str) -> SimPayment {
        SimPayment::new(
            "s-pay-1".into(),
            "s-pub-1".into(),
            format!("s-{infix}-abc"),
            "EUR".into(),
            None,
        )
    }

    fn amounts(p: &SimPayment) -> (Decimal, Decimal, Decimal, Decimal) {
        let a = p.amounts();
        (a.remaining, a.charged, a.total, a.canceled)
    }

    #[test]
    fn amount_semantics_table() {
        // authorize 100 → partial charge 10
        let mut p = payment("crd");
        p.start(TxType::Authorize, TxState::Success, d("100"), None);
        assert_eq!(amounts(&p), (d("100"), d("0"), d("100"), d("0")));
        assert_eq!(p.state().0, 0);
        p.charge(Some(d("10")), TxState::Success, Refs::default())
            .unwrap();
        assert_eq!(amounts(&p), (d("90"), d("10"), d("100"), d("0")));
        assert_eq!(p.state(), (3, "partly"));
        // reversal 10 lowers total
        let mut p = payment("crd");
        p.start(TxType::Authorize, TxState::Success, d("100"), None);
        p.cancel_authorization(
            Some("s-aut-1"),
            Some(d("10")),
            TxState::Success,
            Refs::default(),
        )
        .unwrap();
        assert_eq!(amounts(&p), (d("90"), d("0"), d("90"), d("0")));
        // direct charge 100, refund 10 raises canceled
        let mut p = payment("sft");
        p.start(TxType::Charge, TxState::Success, d("100"), None);
        p.cancel_charge(
            Some("s-chg-1"),
            Some(d("10")),
            TxState::Success,
            Refs::default(),
        )
        .unwrap();
        assert_eq!(amounts(&p), (d("0"), d("90"), d("100"), d("10")));
        assert_eq!(p.state(), (1, "completed"));
        // Paylater authorize 99.99, reversal 33.33
        let mut p = payment("piv");
        p.start(TxType::Authorize, TxState::Success, d("99.99"), None);
        p.cancel_authorization(None, Some(d("33.33")), TxState::Success, Refs::default())
            .unwrap();
        assert_eq!(amounts(&p), (d("66.66"), d("0"), d("66.66"), d("0")));
    }

    #[test]
    fn refusals_carry_unzer_codes() {
        let mut p = payment("crd");
        p.start(TxType::Authorize, TxState::Success, d("100"), None);
        assert_eq!(
            p.charge(Some(d("100.01")), TxState::Success, Refs::default())
                .unwrap_err()
                .code,
            "API.330.100.007"
        );
        let mut q = payment("ppy");
        q.start(TxType::Charge, TxState::Pending, d("50"), None);
        assert_eq!(
            q.ship(Refs {
                invoice_id: Some("R1".into()),
                ..Refs::default()
            })
            .unwrap_err()
            .code,
            "API.360.000.004"
        );
        assert_eq!(
            q.cancel_charge(
                Some("s-chg-1"),
                Some(d("60")),
                TxState::Success,
                Refs::default()
            )
            .unwrap_err()
            .code,
            "API.340.000.004"
        );
        q.receipt(d("60"));
        assert_eq!(q.state(), (4, "payment review"));
        assert_eq!(fmt4(d("12.3")), "12.3000");
    }
}
