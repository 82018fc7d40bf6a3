//! Unzer Payment API connector (REST + JSON, private-key Basic auth).
//!
//! Shaped like a hyperswitch connector: this file holds the URLs, authentication, routing and
//! the status/error mapping; [`transformers`] holds the serde wire types and their conversions.
//! The wire facts (paths, field names, states) come from Unzer's public SDKs and docs, collected
//! with sources in `shared/reference/unzer.md`; each is named in a one-line comment where used.
//!
//! Outcome mapping of a money call ([`PspOutcome`]):
//!
//! | what happened | outcome |
//! |---|---|
//! | transaction `isSuccess`, amount and currency equal to what we sent | `Done` |
//! | transaction `isPending` / `isResumed`, or no status flag | `Pending` (never success) |
//! | error object (any HTTP status, Unzer sends errors with 2xx too) or transaction `isError` | `Declined { code, merchantMessage }` |
//! | 401/403 or an `API.710.*` code | `Declined`, message says it is a configuration error (not retried) |
//! | connection refused / DNS / connect timeout (nothing sent), 429 | `Retryable` |
//! | timeout or reset after sending, 5xx, 408, unreadable 2xx body | `Unknown` |
//! | reply amount or currency differs from the request | `Unknown` (never `Done`) |
//!
//! A 5xx cannot tell "failed before processing" from "processed, then failed", so it is always
//! `Unknown`; the caller resolves it with [`Psp::find_transaction`], which finds nothing when
//! Unzer did not process the call, and only then sends again.
//!
//! Which methods are charged in the shop: Sofort, EPS, iDEAL, Giropay, Alipay and Przelewy24
//! are always direct charges (php-sdk `CanDirectCharge` only); card, PayPal and Apple Pay are
//! charged in the shop when their initial transaction is a charge rather than an authorization;
//! prepayment and the deprecated invoice types start with a *pending* charge (money not yet
//! received); the Paylater types and direct debit secured are authorized (or, for `dds`, charged)
//! and captured later. The connector routes by the payment's actual initial transaction, so it
//! does not depend on this list beyond the Paylater/prepayment distinctions.
//!
//! Refunds: Unzer refunds one charge per call (`…/charges/{chgId}/cancels`, php-sdk
//! CancelService::cancelPaymentCharges walks the charges in order). paybridge books a refund
//! as **one** PSP call, so the connector refunds the first successful charge (in order) whose
//! refundable rest covers the whole amount; when no single charge does, it answers `Declined`
//! with code `PAYBRIDGE.REFUND_SPLIT` and names the per-charge rests, rather than sending
//! several calls whose partial failure the ledger could not represent. Paylater types use the
//! payment-level `…/charges/cancels`, which Unzer spreads itself.
//!
//! Reconciliation ([`Psp::find_transaction`]) fetches the payment, then GETs the candidate
//! transactions of the call's kind (those with the call's amount first) and compares
//! `paymentReference` / `invoiceId` / `orderId` with our reference. Transaction urls from a
//! reply are never followed as given: the connector takes the path only after checking that the
//! url's origin is the configured API host, and sends the GET to the configured host.
//!
//! Secrets: the private key only ever goes into the `Authorization` header; headers and bodies
//! are not logged; [`Secret`] prints `***`.

pub mod transformers;

use crate::config::{Config, MethodConfig, PspKind, Secret};
use crate::ledger::PspCall;
use crate::model::{PspPayment, PspTransaction, TxKind, TxStatus};
use crate::money::Money;
use crate::psp::{Psp, PspError, PspOutcome};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use transformers::{
    CancelRequest, ChargeRequest, PaymentView, ReplyKind, ShipmentRequest, TxRef, WirePayment,
    WireReply,
};
use url::Url;

/// Sandbox API host, used for `s-` keys (php-sdk HttpService::getEnvironmentPrefix).
pub const SANDBOX_HOST: &str = "https://sbx-api.unzer.com";
/// Production API host, used for `p-` keys (php-sdk Apis/PaymentApiConfig.php).
pub const PRODUCTION_HOST: &str = "https://api.unzer.com";

/// Timeouts of the one HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnzerTimeouts {
    /// TCP + TLS connect; a failure here means nothing was sent.
    pub connect: Duration,
    /// The whole request; a timeout here makes a money call's outcome unknown.
    pub request: Duration,
}

impl Default for UnzerTimeouts {
    /// 10 s connect, 60 s per request (php-sdk EnvironmentService default timeout 60 s).
    fn default() -> Self {
        UnzerTimeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Errors building the connector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnzerError {
    #[error("Unzer HTTP client could not be built: {0}")]
    Client(String),
    /// A method config is unusable; `config` is `erp/mandant/erp_method`. Never contains a secret.
    #[error("method config {config}: {message}")]
    Config { config: String, message: String },
}

/// The Unzer connector: one HTTP client, private keys by public key.
pub struct UnzerPsp {
    client: reqwest::Client,
    keys: HashMap<String, Secret>,
}

impl fmt::Debug for UnzerPsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut public: Vec<&String> = self.keys.keys().collect();
        public.sort();
        f.debug_struct("UnzerPsp")
            .field("public_keys", &public)
            .finish_non_exhaustive()
    }
}

/// Where and as whom one call goes.
struct Target<'a> {
    base: Url,
    key: &'a Secret,
}

impl Target<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.origin().ascii_serialization())
    }
}

/// What the transport did with a request.
enum Transport {
    /// An HTTP reply arrived.
    Reply { status: StatusCode, body: String },
    /// Known not sent (connect failed).
    NotSent(String),
    /// Sent, but no complete reply (timeout, reset).
    Lost(String),
}

/// A money call ready to send.
struct Planned {
    path: String,
    body: serde_json::Value,
    /// Amount the reply must echo (none for shipments).
    expect: Option<Money>,
}

/// Unzer ids are `{s|p}-{infix}-{suffix}` (php-sdk Services/IdService.php); anything else is
/// refused before it can reach a URL path.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_official(u: &Url) -> bool {
    u.scheme() == "https"
        && matches!(
            u.host_str(),
            Some("api.unzer.com") | Some("sbx-api.unzer.com")
        )
}

/// The API base for a config: `api_host` if set (tests point it at the simulator), else by the
/// private key's prefix — `p-` production, `s-` sandbox (php-sdk HttpService::isProductionKey).
/// Plain `http` is accepted only for a loopback host, so a key never crosses a network unencrypted.
pub fn api_base(api_host: Option<&str>, private_key: &Secret) -> Result<Url, String> {
    let raw = match api_host {
        Some(h) => h.trim().to_string(),
        None if private_key.expose().starts_with("p-") => PRODUCTION_HOST.to_string(),
        None if private_key.expose().starts_with("s-") => SANDBOX_HOST.to_string(),
        None => {
            return Err(
                "the private key is neither a sandbox (s-) nor a production (p-) key".into(),
            );
        }
    };
    let u = Url::parse(&raw).map_err(|e| format!("api_host {raw:?} is not a URL: {e}"))?;
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
            "api_host {raw:?} must be scheme://host[:port] only; the connector adds /v1/…"
        ));
    }
    Ok(u)
}

fn declined(code: &str, message: impl Into<String>) -> PspOutcome {
    PspOutcome::Declined {
        code: code.into(),
        message: message.into(),
    }
}

fn auth_declined(code: String, detail: &str) -> PspOutcome {
    PspOutcome::Declined {
        code,
        message: format!(
            "Unzer refused the credentials — a configuration error, not retried: {detail}"
        ),
    }
}

impl UnzerPsp {
    /// A connector with private keys by public key. Builds the one HTTP client (no redirects:
    /// a redirect could carry the key elsewhere).
    pub fn new(
        keys: HashMap<String, Secret>,
        timeouts: UnzerTimeouts,
    ) -> Result<UnzerPsp, UnzerError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("paybridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UnzerError::Client(e.to_string()))?;
        Ok(UnzerPsp { client, keys })
    }

    /// The connector for every active Unzer method config, with default timeouts.
    pub fn for_config(config: &Config) -> Result<UnzerPsp, UnzerError> {
        UnzerPsp::for_config_with(config, UnzerTimeouts::default())
    }

    /// As [`UnzerPsp::for_config`] with explicit timeouts. Resolves each private key with
    /// `resolve_local()`; errors name the config and the reference, never the value. Inactive
    /// configs are skipped (their secrets need not exist).
    pub fn for_config_with(
        config: &Config,
        timeouts: UnzerTimeouts,
    ) -> Result<UnzerPsp, UnzerError> {
        let mut keys: HashMap<String, Secret> = HashMap::new();
        for m in config
            .methods
            .iter()
            .filter(|m| m.psp == PspKind::Unzer && m.active)
        {
            let name = format!("{}/{}/{}", m.erp, m.mandant, m.erp_method);
            let err = |message: String| UnzerError::Config {
                config: name.clone(),
                message,
            };
            let secret = m
                .private_key
                .resolve_local()
                .map_err(|e| err(format!("private_key: {e}")))?;
            if !(secret.expose().starts_with("s-priv-") || secret.expose().starts_with("p-priv-")) {
                return Err(err(
                    "private_key: an Unzer private key starts with s-priv- or p-priv-".into(),
                ));
            }
            if secret.expose().get(..2) != m.public_key.get(..2) {
                return Err(err(
                    "public_key and private_key belong to different environments (s- vs p-)".into(),
                ));
            }
            api_base(m.api_host.as_deref(), &secret).map_err(&err)?;
            match keys.get(&m.public_key) {
                Some(prev) if prev != &secret => {
                    return Err(err(format!(
                        "public key {} is configured with two different private keys",
                        m.public_key
                    )));
                }
                _ => {
                    keys.insert(m.public_key.clone(), secret);
                }
            }
        }
        UnzerPsp::new(keys, timeouts)
    }

    /// Public keys this connector holds a private key for.
    pub fn public_keys(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn target(&self, account: &MethodConfig) -> Result<Target<'_>, String> {
        let key = self.keys.get(&account.public_key).ok_or_else(|| {
            format!(
                "no Unzer private key loaded for public key {}",
                account.public_key
            )
        })?;
        let base = api_base(account.api_host.as_deref(), key)?;
        Ok(Target { base, key })
    }

    async fn send(
        &self,
        t: &Target<'_>,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Transport {
        // Basic auth, private key as user, empty password (php-sdk HttpService::composeHttpHeaders).
        let mut req = self
            .client
            .request(method.clone(), t.url(path))
            .basic_auth(t.key.expose(), Some(""))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_builder() => {
                tracing::debug!(%method, path, error = %e, "unzer request not sent");
                return Transport::NotSent(e.to_string());
            }
            Err(e) => {
                tracing::debug!(%method, path, error = %e, "unzer request lost");
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                };
                return Transport::Lost(format!("{what} after sending: {e}"));
            }
        };
        let status = resp.status();
        tracing::debug!(%method, path, status = status.as_u16(), "unzer reply");
        match resp.text().await {
            Ok(body) => Transport::Reply { status, body },
            Err(e) => Transport::Lost(format!("reply body lost ({}): {e}", status.as_u16())),
        }
    }

    /// A GET whose reply is parsed into `T`; errors become [`PspError`].
    async fn get_json<T: DeserializeOwned>(
        &self,
        t: &Target<'_>,
        path: &str,
        payment_id: &str,
    ) -> Result<T, PspError> {
        let (status, body) = match self.send(t, Method::GET, path, None).await {
            Transport::Reply { status, body } => (status, body),
            Transport::NotSent(m) | Transport::Lost(m) => {
                return Err(PspError::Unavailable(format!("GET {path}: {m}")));
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(PspError::Unavailable(format!(
                "GET {path}: HTTP {}",
                status.as_u16()
            )));
        }
        let reply: Option<WireReply> = serde_json::from_str(&body).ok();
        if let Some(ReplyKind::Error { code, message }) = reply
            .as_ref()
            .filter(|r| !r.errors.is_empty())
            .map(WireReply::kind)
        {
            return Err(
                if code.starts_with("API.710.") || matches!(status.as_u16(), 401 | 403) {
                    PspError::Auth(format!("{code}: {message}"))
                } else if code == "API.310.100.003" || status == StatusCode::NOT_FOUND {
                    // payment not found (php-sdk ApiResponseCodes::API_ERROR_PAYMENT_NOT_FOUND)
                    PspError::NotFound(payment_id.to_string())
                } else {
                    PspError::BadReply(format!("GET {path}: {code}: {message}"))
                },
            );
        }
        match status.as_u16() {
            401 | 403 => {
                return Err(PspError::Auth(format!(
                    "GET {path}: HTTP {}",
                    status.as_u16()
                )));
            }
            404 => return Err(PspError::NotFound(payment_id.to_string())),
            s if !(200..300).contains(&s) => {
                return Err(PspError::BadReply(format!("GET {path}: HTTP {s}")));
            }
            _ => {}
        }
        serde_json::from_str(&body)
            .map_err(|e| PspError::BadReply(format!("GET {path}: unreadable reply: {e}")))
    }

    /// `GET /v1/payments/{id}` (docs "Check payment details"; php-sdk ResourceService::fetchPayment).
    async fn view(&self, t: &Target<'_>, payment_id: &str) -> Result<PaymentView, PspError> {
        if !valid_id(payment_id) {
            return Err(PspError::NotFound(payment_id.to_string()));
        }
        let wire: WirePayment = self
            .get_json(t, &format!("/v1/payments/{payment_id}"), payment_id)
            .await?;
        if wire.id != payment_id {
            return Err(PspError::BadReply(format!(
                "asked for payment {payment_id}, got {}",
                wire.id
            )));
        }
        PaymentView::try_from(wire).map_err(PspError::BadReply)
    }

    /// The path of a transaction url from a reply, to be fetched on the configured host. The url
    /// must be on that host (or, for the official hosts, the other official host) and under the
    /// payment; otherwise it is refused and never fetched.
    fn local_path(&self, t: &Target<'_>, payment_id: &str, url: &Url) -> Result<String, PspError> {
        let same_origin =
            url.origin() == t.base.origin() || (is_official(&t.base) && is_official(url));
        if !same_origin {
            return Err(PspError::BadReply(format!(
                "transaction url {url} is not on the configured Unzer host {}; not fetched",
                t.base.origin().ascii_serialization()
            )));
        }
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        let under_payment = segments.len() > 3
            && segments[0] == "v1"
            && segments[1] == "payments"
            && segments[2] == payment_id;
        if !under_payment || !segments.iter().all(|s| valid_id(s)) || url.query().is_some() {
            return Err(PspError::BadReply(format!(
                "transaction url {url} is not a transaction of payment {payment_id}"
            )));
        }
        Ok(format!("/{}", segments.join("/")))
    }

    async fn plan(
        &self,
        t: &Target<'_>,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Planned, PspOutcome> {
        let pid = &payment.payment_id;
        let cancel = |amount: Money, reason: Option<&'static str>| {
            serde_json::to_value(CancelRequest {
                amount: transformers::amount_text(amount),
                reason_code: reason,
                payment_reference: reference.to_string(),
            })
        };
        let (path, body, expect) = match call {
            // Capture: POST /v1/payments/{id}/charges (php-sdk PaymentService::chargePayment; docs "Charge a payment").
            PspCall::Capture { amount } => {
                let body = serde_json::to_value(ChargeRequest {
                    amount: transformers::amount_text(*amount),
                    invoice_id: None,
                    payment_reference: reference.to_string(),
                });
                (format!("/v1/payments/{pid}/charges"), body, Some(*amount))
            }
            PspCall::Reverse { amount } => {
                if transformers::is_paylater(payment.method) {
                    // Paylater: payment-level reversal POST …/authorize/cancels (docs "Manage Unzer Invoice (upl)").
                    (
                        format!("/v1/payments/{pid}/authorize/cancels"),
                        cancel(*amount, None),
                        Some(*amount),
                    )
                } else {
                    match payment.initial() {
                        Some(tx) if tx.kind == TxKind::Authorize && valid_id(&tx.id) => {
                            // Reversal on the authorization: POST …/authorize/{autId}/cancels (php-sdk CancelService::cancelAuthorization);
                            // a card pre-authorization lives under …/preauthorize/{id} (java-sdk Preauthorization).
                            let segment = if tx.id.contains("-preaut-") {
                                "preauthorize"
                            } else {
                                "authorize"
                            };
                            (
                                format!("/v1/payments/{pid}/{segment}/{}/cancels", tx.id),
                                cancel(*amount, None),
                                Some(*amount),
                            )
                        }
                        Some(tx)
                            if tx.kind == TxKind::Charge
                                && tx.status == TxStatus::Pending
                                && transformers::pending_initial_charge(payment.method)
                                && valid_id(&tx.id) =>
                        {
                            // Prepayment/invoice before receipt: cancel the initial charge (docs "Manage Unzer Prepayment": always s-chg-1).
                            (
                                format!("/v1/payments/{pid}/charges/{}/cancels", tx.id),
                                cancel(*amount, Some("CANCEL")),
                                Some(*amount),
                            )
                        }
                        _ => {
                            return Err(declined(
                                "PAYBRIDGE.ROUTE",
                                format!(
                                    "payment {pid} has no open authorization or pending initial charge to reverse"
                                ),
                            ));
                        }
                    }
                }
            }
            PspCall::Refund { amount, reason } => {
                let reason = Some(transformers::reason_code(*reason));
                if transformers::is_paylater(payment.method) {
                    // Paylater: payment-level refund POST …/charges/cancels (php-sdk PaylaterCancelTest; docs "Manage Unzer Invoice (upl)").
                    (
                        format!("/v1/payments/{pid}/charges/cancels"),
                        cancel(*amount, reason),
                        Some(*amount),
                    )
                } else {
                    let view = match self.view(t, pid).await {
                        Ok(v) => v,
                        Err(e) => {
                            return Err(PspOutcome::Retryable {
                                message: format!(
                                    "payment fetch before refund failed, nothing sent: {e}"
                                ),
                            });
                        }
                    };
                    let charge = refund_charge(&view, *amount)?;
                    // Refund one charge: POST …/charges/{chgId}/cancels (php-sdk CancelService::cancelCharge).
                    (
                        format!("/v1/payments/{pid}/charges/{charge}/cancels"),
                        cancel(*amount, reason),
                        Some(*amount),
                    )
                }
            }
            // Shipment (legacy secured types): POST …/shipments with invoiceId (php-sdk PaymentService::ship; API.360.100.025 without it).
            PspCall::Shipment { invoice_id } => {
                let body = serde_json::to_value(ShipmentRequest {
                    invoice_id: invoice_id.clone(),
                });
                (format!("/v1/payments/{pid}/shipments"), body, None)
            }
        };
        let body = body.map_err(|e| declined("PAYBRIDGE.REQUEST", format!("request body: {e}")))?;
        Ok(Planned { path, body, expect })
    }

    /// Sends a planned money call and maps the reply.
    async fn post(&self, t: &Target<'_>, planned: &Planned) -> PspOutcome {
        let path = &planned.path;
        match self.send(t, Method::POST, path, Some(&planned.body)).await {
            Transport::NotSent(m) => PspOutcome::Retryable {
                message: format!("POST {path} not sent: {m}"),
            },
            Transport::Lost(m) => PspOutcome::Unknown {
                message: format!("POST {path}: {m}; Unzer may have processed it"),
            },
            Transport::Reply { status, body } => classify(status, &body, planned.expect, path),
        }
    }
}

/// The charge a refund goes to: the first successful charge, in order, whose refundable rest
/// (its amount less the refunds on it) covers the whole amount.
fn refund_charge(view: &PaymentView, amount: Money) -> Result<String, PspOutcome> {
    let mut rests: Vec<(String, Money)> = Vec::new();
    for c in view
        .txs
        .iter()
        .filter(|t| t.kind == TxKind::Charge && t.status == TxStatus::Success)
    {
        let refunded = view
            .txs
            .iter()
            .filter(|r| {
                r.kind == TxKind::CancelCharge
                    && r.status != TxStatus::Error
                    && r.parent_charge.as_deref() == Some(c.id.as_str())
            })
            .try_fold(Money::zero(c.amount.currency()), |acc, r| {
                acc.checked_add(r.amount)
            });
        let rest = refunded.and_then(|r| c.amount.saturating_sub(r));
        let rest =
            rest.map_err(|e| declined("PAYBRIDGE.AMOUNTS", format!("charge {}: {e}", c.id)))?;
        if rest.cmp_to(&amount).is_ok_and(|o| o.is_ge()) && valid_id(&c.id) {
            return Ok(c.id.clone());
        }
        rests.push((c.id.clone(), rest));
    }
    let listing = rests
        .iter()
        .map(|(id, m)| format!("{id} {m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total = Money::sum(amount.currency(), rests.iter().map(|(_, m)| m)).unwrap_or(amount);
    if total.cmp_to(&amount).is_ok_and(|o| o.is_ge()) {
        Err(declined(
            "PAYBRIDGE.REFUND_SPLIT",
            format!(
                "a refund of {amount} needs more than one charge (refundable: {listing}); Unzer refunds one charge per call and paybridge books a refund as one call — split the credit note or refund by hand"
            ),
        ))
    } else {
        Err(declined(
            "PAYBRIDGE.REFUND_EXCEEDS",
            format!(
                "a refund of {amount} exceeds what is refundable (refundable: {})",
                if listing.is_empty() {
                    "nothing".into()
                } else {
                    listing
                }
            ),
        ))
    }
}

/// Checks that the reply echoes the amount and currency we sent (hyperswitch habit: every
/// capture/refund reply is checked against the request).
fn verify_amount(reply: &WireReply, expect: Option<Money>) -> Result<(), String> {
    let Some(exp) = expect else { return Ok(()) };
    let currency = reply.currency.as_deref().unwrap_or("(none)");
    if currency != exp.currency().code() {
        return Err(format!(
            "reply currency {currency} differs from the {} we sent",
            exp.currency()
        ));
    }
    let got = reply
        .amount
        .as_ref()
        .ok_or_else(|| "reply has no amount".to_string())?
        .money(exp.currency())?;
    if got != exp {
        return Err(format!("reply amount {got} differs from the {exp} we sent"));
    }
    Ok(())
}

/// Maps one HTTP reply to a money call into an outcome (see the table in the module doc).
fn classify(status: StatusCode, body: &str, expect: Option<Money>, path: &str) -> PspOutcome {
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return PspOutcome::Retryable {
            message: format!("POST {path}: HTTP 429, rate limited"),
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return PspOutcome::Unknown {
            message: format!("POST {path}: HTTP {code}; Unzer may have processed it"),
        };
    }
    let reply: WireReply = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) if status.is_success() => {
            return PspOutcome::Unknown {
                message: format!(
                    "POST {path}: unreadable HTTP {code} reply ({e}); Unzer may have processed it"
                ),
            };
        }
        Err(_) if matches!(code, 401 | 403) => {
            return auth_declined(format!("HTTP {code}"), "no readable error object");
        }
        Err(_) => {
            return declined(
                &format!("HTTP {code}"),
                format!("POST {path}: unreadable error reply"),
            );
        }
    };
    match reply.kind() {
        // Key/auth errors (php-sdk ApiResponseCodes API.710.000.002/.005/.007) or 401/403 (docs "Error handling").
        ReplyKind::Error { code: c, message }
            if c.starts_with("API.710.") || matches!(code, 401 | 403) =>
        {
            auth_declined(c, &message)
        }
        ReplyKind::Error { code: c, message } => PspOutcome::Declined { code: c, message },
        _ if matches!(code, 401 | 403) => auth_declined(format!("HTTP {code}"), "no error object"),
        _ if !status.is_success() => declined(
            &format!("HTTP {code}"),
            format!("POST {path}: HTTP {code} without an error object"),
        ),
        ReplyKind::Success { tx_id } => match verify_amount(&reply, expect) {
            Ok(()) => PspOutcome::Done { tx_id },
            Err(m) => PspOutcome::Unknown {
                message: format!(
                    "POST {path}: {tx_id} reported success but {m}; not treated as done"
                ),
            },
        },
        ReplyKind::Pending { tx_id } | ReplyKind::Unclear { tx_id: Some(tx_id) } => {
            match verify_amount(&reply, expect) {
                Ok(()) => PspOutcome::Pending { tx_id },
                Err(m) => PspOutcome::Unknown {
                    message: format!("POST {path}: {tx_id} pending but {m}"),
                },
            }
        }
        ReplyKind::Unclear { tx_id: None } => PspOutcome::Unknown {
            message: format!("POST {path}: HTTP {code} reply without transaction id or status"),
        },
    }
}

fn call_kind(call: &PspCall) -> TxKind {
    match call {
        PspCall::Capture { .. } => TxKind::Charge,
        PspCall::Reverse { .. } => TxKind::CancelAuthorize,
        PspCall::Refund { .. } => TxKind::CancelCharge,
        PspCall::Shipment { .. } => TxKind::Shipment,
    }
}

#[async_trait]
impl Psp for UnzerPsp {
    async fn fetch(
        &self,
        account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        let t = self.target(account).map_err(PspError::Auth)?;
        let mut view = self.view(&t, payment_id).await?;
        if transformers::pending_initial_charge(view.payment.method)
            && let Some(initial) = view.txs.iter().find(|x| x.kind == TxKind::Charge)
        {
            // Transfer details are on the initial charge's `processing` (docs "Accept Unzer Prepayment"; java-sdk JsonProcessing).
            let path = self.local_path(&t, payment_id, &initial.url)?;
            let charge: WireReply = self.get_json(&t, &path, payment_id).await?;
            view.payment.bank_details = charge.bank_details();
        }
        Ok(view.payment)
    }

    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let t = match self.target(account) {
            Ok(t) => t,
            Err(m) => return declined("PAYBRIDGE.CONFIG", m),
        };
        if !valid_id(&payment.payment_id) {
            return declined(
                "PAYBRIDGE.REQUEST",
                format!("{:?} is not an Unzer payment id", payment.payment_id),
            );
        }
        if let Some(a) = call.amount() {
            if a.currency() != payment.currency {
                return declined(
                    "PAYBRIDGE.CURRENCY",
                    format!(
                        "call in {} on a payment in {}",
                        a.currency(),
                        payment.currency
                    ),
                );
            }
            if !a.is_positive() {
                return declined("PAYBRIDGE.AMOUNT", format!("amount {a} is not positive"));
            }
        }
        let planned = match self.plan(&t, payment, call, reference).await {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let outcome = self.post(&t, &planned).await;
        match (&outcome, call) {
            // A repeated shipment answers "insurance already activated" (php-sdk ApiResponseCodes COR.700.400.800): the earlier shipment stands.
            (PspOutcome::Declined { code, .. }, PspCall::Shipment { .. })
                if code == "COR.700.400.800" =>
            {
                match self.view(&t, &payment.payment_id).await {
                    Ok(v) => match v
                        .txs
                        .iter()
                        .rev()
                        .find(|x| x.kind == TxKind::Shipment && x.status == TxStatus::Success)
                    {
                        Some(s) => PspOutcome::Done {
                            tx_id: s.id.clone(),
                        },
                        None => outcome,
                    },
                    Err(_) => outcome,
                }
            }
            _ => outcome,
        }
    }

    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let t = self.target(account).map_err(PspError::Auth)?;
        let pid = payment.payment_id.as_str();
        let view = self.view(&t, pid).await?;
        let kind = call_kind(call);
        let expected = call.amount();
        let (same, other): (Vec<&TxRef>, Vec<&TxRef>) = view
            .txs
            .iter()
            .filter(|x| x.kind == kind)
            .partition(|x| expected.is_none_or(|e| x.amount == e));
        // Newest first; candidates with another amount last, only to tell a mismatch from absence.
        for tx in same.iter().rev().chain(other.iter().rev()) {
            let path = self.local_path(&t, pid, &tx.url)?;
            let reply: WireReply = self.get_json(&t, &path, pid).await?;
            let ours = match call {
                PspCall::Shipment { invoice_id } => {
                    reply.invoice_id.as_deref() == Some(invoice_id.as_str())
                        || reply.carries(reference)
                }
                _ => reply.carries(reference),
            };
            if !ours {
                continue;
            }
            if let Some(e) = expected
                && tx.amount != e
            {
                return Err(PspError::BadReply(format!(
                    "transaction {} carries our reference {reference} but is for {}, not {e}",
                    tx.id, tx.amount
                )));
            }
            let has_flags = reply.is_success.is_some()
                || reply.is_pending.is_some()
                || reply.is_error.is_some();
            return Ok(Some(PspTransaction {
                id: tx.id.clone(),
                kind,
                status: if has_flags { reply.status() } else { tx.status },
                amount: tx.amount,
                reference: Some(reference.to_string()),
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::EUR)
    }

    #[test]
    fn host_by_prefix_and_loopback_only_http() {
        let s = Secret::new("s-priv-abc");
        let p = Secret::new("p-priv-abc");
        assert_eq!(
            api_base(None, &s).unwrap().as_str(),
            "https://sbx-api.unzer.com/"
        );
        assert_eq!(
            api_base(None, &p).unwrap().as_str(),
            "https://api.unzer.com/"
        );
        assert!(api_base(None, &Secret::new("x-priv-abc")).is_err());
        assert!(api_base(Some("http://127.0.0.1:8081"), &s).is_ok());
        assert!(api_base(Some("http://localhost:8081/"), &s).is_ok());
        assert!(api_base(Some("http://evil.example"), &s).is_err());
        assert!(api_base(Some("https://host.example/v1"), &s).is_err());
        let e = api_base(Some("http://evil.example"), &s).unwrap_err();
        assert!(!e.contains("s-priv-abc"));
    }

    #[test]
    fn classify_maps_statuses() {
        let ok = r#"{"id":"s-chg-2","isSuccess":true,"isPending":false,"isError":false,"amount":"10.0000","currency":"EUR"}"#;
        assert_eq!(
            classify(StatusCode::OK, ok, Some(eur(1000)), "/p"),
            PspOutcome::Done {
                tx_id: "s-chg-2".into()
            }
        );
        assert!(matches!(
            classify(StatusCode::OK, ok, Some(eur(1001)), "/p"),
            PspOutcome::Unknown { .. }
        ));
        let usd = ok.replace("EUR", "USD");
        assert!(matches!(
            classify(StatusCode::OK, &usd, Some(eur(1000)), "/p"),
            PspOutcome::Unknown { .. }
        ));
        let err200 = r#"{"id":"s-err-1","isError":true,"errors":[{"code":"API.340.000.004","merchantMessage":"no","customerMessage":"x"}]}"#;
        assert_eq!(
            classify(StatusCode::OK, err200, Some(eur(1000)), "/p"),
            PspOutcome::Declined {
                code: "API.340.000.004".into(),
                message: "no".into()
            }
        );
        let auth =
            r#"{"isError":true,"errors":[{"code":"API.710.000.002","merchantMessage":"bad key"}]}"#;
        assert!(
            matches!(classify(StatusCode::UNAUTHORIZED, auth, None, "/p"), PspOutcome::Declined { code, message } if code == "API.710.000.002" && message.contains("configuration"))
        );
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "", None, "/p"),
            PspOutcome::Retryable { .. }
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, err200, None, "/p"),
            PspOutcome::Unknown { .. }
        ));
        assert!(matches!(
            classify(StatusCode::OK, "<html>", None, "/p"),
            PspOutcome::Unknown { .. }
        ));
        let pending = r#"{"id":"s-chg-3","isSuccess":false,"isPending":true,"amount":"10.0000","currency":"EUR"}"#;
        assert_eq!(
            classify(StatusCode::OK, pending, Some(eur(1000)), "/p"),
            PspOutcome::Pending {
                tx_id: "s-chg-3".into()
            }
        );
        let bare = r#"{"id":"s-chg-4","amount":"10.0000","currency":"EUR"}"#;
        assert_eq!(
            classify(StatusCode::OK, bare, Some(eur(1000)), "/p"),
            PspOutcome::Pending {
                tx_id: "s-chg-4".into()
            }
        );
    }

    #[test]
    fn debug_never_shows_private_keys() {
        let psp = UnzerPsp::new(
            HashMap::from([("s-pub-1".to_string(), Secret::new("s-priv-secret"))]),
            UnzerTimeouts::default(),
        )
        .unwrap();
        let d = format!("{psp:?}");
        assert!(d.contains("s-pub-1") && !d.contains("s-priv-secret"), "{d}");
    }
}
