//! The PSP's view of one payment: state, amounts, transactions, method, bank details.
//!
//! PSP-neutral: a payment is a state, an ordered list of transactions (authorize, charge,
//! reversal, refund, shipment, chargeback) each with a status and an amount, a method and,
//! for prepayment, the bank details. Each PSP connector maps its own resource onto it (the
//! mapping lives in the connector's `transformers`). Our operation id travels in the
//! transaction's reference (the PSP's merchant reference field), which is how an unknown
//! outcome is resolved by fetching the payment.

use crate::money::{Currency, Money, MoneyError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Payment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Pending,
    Completed,
    Canceled,
    Partly,
    PaymentReview,
    Chargeback,
    Create,
}

/// Transaction type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxKind {
    Authorize,
    Charge,
    /// Reversal of (part of) the authorization or of a pending initial charge.
    CancelAuthorize,
    /// Refund of (part of) a charge.
    CancelCharge,
    Shipment,
    Chargeback,
}

/// Transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Success,
    Pending,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PspTransaction {
    pub id: String,
    pub kind: TxKind,
    pub status: TxStatus,
    pub amount: Money,
    /// Our operation id, when the transaction was made by paybridge.
    pub reference: Option<String>,
    /// When the PSP made the transaction, where it says (the authorization's age decides
    /// whether it can still be captured).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// The 17 payment methods of seed 000 (the PSP's type code in the comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentMethod {
    /// `dds` (deprecated)
    SepaDirectDebitSecured,
    /// `pdd`
    PaylaterDirectDebit,
    /// `ivc` (deprecated)
    Invoice,
    /// `ivs` (deprecated)
    InvoiceSecured,
    /// Invoice (Paylater), the older name of `piv`
    InvoicePaylater,
    /// `piv`
    PaylaterInvoice,
    /// `pit`
    PaylaterInstallment,
    /// `ppy`
    Prepayment,
    /// `ppl`
    Paypal,
    /// `crd`
    Card,
    /// `sft`
    Sofort,
    /// `eps`
    Eps,
    /// `idl`
    Ideal,
    /// `gro`
    Giropay,
    /// `ali`
    Alipay,
    /// `p24`
    Przelewy24,
    /// `apl`
    ApplePay,
}

/// How a method moves money; the rows of behaviour.md §3.5a.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodFamily {
    /// Card, Apple Pay, PayPal when authorized: the only family where the mode matters.
    AuthorizeCapture,
    /// Sofort, EPS, iDEAL, Giropay, Alipay, P24, PayPal/card when charged in the shop.
    ChargedInShop,
    Prepayment,
    /// Deprecated invoice / invoice secured: initial charge pending by design.
    InvoiceLegacy,
    /// Paylater invoice: the charge starts the payment term.
    PaylaterInvoice,
    /// Paylater installment, Paylater direct debit, direct debit secured.
    PaylaterDebit,
}

impl PaymentMethod {
    /// The family by method alone (before looking at what the shop did).
    pub fn base_family(self) -> MethodFamily {
        use PaymentMethod::*;
        match self {
            Card | ApplePay | Paypal => MethodFamily::AuthorizeCapture,
            Sofort | Eps | Ideal | Giropay | Alipay | Przelewy24 => MethodFamily::ChargedInShop,
            Prepayment => MethodFamily::Prepayment,
            Invoice | InvoiceSecured => MethodFamily::InvoiceLegacy,
            InvoicePaylater | PaylaterInvoice => MethodFamily::PaylaterInvoice,
            PaylaterInstallment | PaylaterDirectDebit | SepaDirectDebitSecured => {
                MethodFamily::PaylaterDebit
            }
        }
    }

    /// Methods whose shipment must be reported with a separate shipment call (deprecated
    /// invoice secured).
    pub fn needs_shipment_call(self) -> bool {
        matches!(self, PaymentMethod::InvoiceSecured)
    }
}

/// Bank details a prepayment customer transfers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankDetails {
    pub holder: String,
    pub iban: String,
    pub bic: String,
    /// The payment reference the customer must quote.
    pub descriptor: String,
}

/// The PSP's view of one payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PspPayment {
    pub payment_id: String,
    pub state: PaymentState,
    pub method: PaymentMethod,
    pub currency: Currency,
    /// In order: the initial authorize/charge first.
    pub transactions: Vec<PspTransaction>,
    pub bank_details: Option<BankDetails>,
    /// The PSP reports per-kind totals, not single transactions (one transaction per kind
    /// standing for their sum, carrying no reference): a read taken after a call already
    /// counts it, and a stored one cannot tell which calls it counts, so it is never extended
    /// with paybridge's own calls; such a payment is read fresh instead.
    #[serde(default)]
    pub totals_only: bool,
}

/// Amounts derived from the successful transactions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Initial authorization (or initial charge) amount.
    pub authorized: Money,
    /// Σ successful charges (for prepayment/invoice: the receipts, not the pending initial charge).
    pub charged: Money,
    /// Σ successful reversals of the authorization.
    pub reversed: Money,
    /// Σ successful refunds.
    pub refunded: Money,
}

impl Position {
    /// Still capturable: authorized − charged − reversed, floored at zero.
    pub fn remaining(&self) -> Result<Money, MoneyError> {
        self.authorized
            .saturating_sub(self.charged)?
            .saturating_sub(self.reversed)
    }

    /// Still refundable: charged − refunded.
    pub fn refundable(&self) -> Result<Money, MoneyError> {
        self.charged.saturating_sub(self.refunded)
    }
}

impl PspPayment {
    /// The first authorize or charge: what the shop started.
    pub fn initial(&self) -> Option<&PspTransaction> {
        self.transactions
            .iter()
            .find(|t| matches!(t.kind, TxKind::Authorize | TxKind::Charge))
    }

    /// The family, refined by what the shop did: an authorize-capture or direct-debit method
    /// whose initial transaction is a successful charge was charged in the shop.
    pub fn family(&self) -> MethodFamily {
        let base = self.method.base_family();
        match (base, self.initial()) {
            // Direct debit secured (`dds`) can be a direct charge too.
            (MethodFamily::AuthorizeCapture | MethodFamily::PaylaterDebit, Some(t))
                if t.kind == TxKind::Charge && t.status == TxStatus::Success =>
            {
                MethodFamily::ChargedInShop
            }
            _ => base,
        }
    }

    /// Money position from the successful transactions. For prepayment and legacy invoice the
    /// initial charge stays pending by design: it is the amount due, not money received, so
    /// only later successful charges (the receipts) count as charged.
    pub fn position(&self) -> Result<Position, MoneyError> {
        let zero = Money::zero(self.currency);
        let initial = self.initial();
        let authorized = initial.map_or(zero, |t| t.amount);
        let mut p = Position {
            authorized,
            charged: zero,
            reversed: zero,
            refunded: zero,
        };
        for t in self
            .transactions
            .iter()
            .filter(|t| t.status == TxStatus::Success)
        {
            match t.kind {
                TxKind::Charge => p.charged = p.charged.checked_add(t.amount)?,
                TxKind::CancelAuthorize => p.reversed = p.reversed.checked_add(t.amount)?,
                TxKind::CancelCharge => p.refunded = p.refunded.checked_add(t.amount)?,
                TxKind::Authorize | TxKind::Shipment | TxKind::Chargeback => {}
            }
        }
        Ok(p)
    }

    /// Prepayment / invoice: the customer's transfer(s) cover the amount due.
    pub fn received_in_full(&self) -> Result<bool, MoneyError> {
        let p = self.position()?;
        let due = p.authorized.saturating_sub(p.reversed)?;
        Ok(self.state == PaymentState::Completed
            || (p.charged.is_positive() && p.charged.cmp_to(&due)?.is_ge()))
    }

    /// The transaction carrying our operation id, if the PSP has one.
    pub fn find_by_reference(&self, reference: &str) -> Option<&PspTransaction> {
        self.transactions
            .iter()
            .find(|t| t.reference.as_deref() == Some(reference))
    }
}
