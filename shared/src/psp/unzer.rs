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
//! Refunds: Unzer refunds one charge per call (`…/charges/{chgId}/cancels`). A refund larger
//! than any single charge's refundable rest is spread over the successful charges in charge
//! order, each taking up to its rest, as php-sdk CancelService::cancelPaymentCharges does; every
//! part carries the **same** `paymentReference` (the operation's reference) and the reason code.
//! paybridge still books the refund as one [`PspCall`]: the connector reports `Done` only when
//! the successful cancels carrying the reference add up to exactly the requested amount. Before
//! it sends anything it reads the cancels that already carry the reference and sends only the
//! remainder, so an attempt that died after some parts and is retried never refunds more than
//! the amount. A part declined after others went through answers `Declined` with code
//! `PAYBRIDGE.REFUND_PARTIAL` and names every part already refunded (cancel id, amount, charge)
//! for a human; a part with an unknown outcome answers `Unknown`. Paylater types use the
//! payment-level `…/charges/cancels` in one call, which Unzer spreads itself.
//!
//! Reconciliation ([`Psp::find_transaction`]) fetches the payment, then GETs the candidate
//! transactions of the call's kind (those with the call's amount first) and compares
//! `paymentReference` / `invoiceId` / `orderId` with our reference; for a spread refund it sums
//! every charge cancel carrying the reference (see [`UnzerPsp`]'s `find_transaction` for the
//! contract). Transaction urls from a reply are never followed as given: the connector takes
//! the path only after checking that the url's origin is the configured API host, and sends the
//! GET to the configured host.
//!
//! Secrets: the private key only ever goes into the `Authorization` header; headers and bodies
//! are not logged; [`Secret`] prints `***`.

mod calls;
mod outcome;
mod refund;
pub mod transformers;
pub mod webhook;

use outcome::*;

use crate::config::{Config, MethodConfig, PspKind, Secret, SecretRef};
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

/// Reads a reply body of at most [`MAX_REPLY_BYTES`], chunk by chunk (a hostile peer cannot
/// make the connector buffer an unbounded body).
async fn read_capped(mut resp: reqwest::Response, status: StatusCode) -> Transport {
    let too_big = || {
        Transport::TooBig(format!(
            "HTTP {} reply body larger than {MAX_REPLY_BYTES} bytes",
            status.as_u16()
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
    {
        return too_big();
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > MAX_REPLY_BYTES {
                    return too_big();
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                return Transport::Lost(format!("reply body lost ({}): {e}", status.as_u16()));
            }
        }
    }
    Transport::Reply {
        status,
        body: String::from_utf8_lossy(&buf).into_owned(),
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
    /// A reply arrived but its body is larger than [`MAX_REPLY_BYTES`] (never read in full).
    TooBig(String),
}

/// The largest reply body read from Unzer; a payment with all its transactions is a few KiB.
const MAX_REPLY_BYTES: usize = 2 * 1024 * 1024;

/// A money call ready to send.
struct Planned {
    path: String,
    body: serde_json::Value,
    /// Amount the reply must echo (none for shipments).
    expect: Option<Money>,
}

/// A transaction id as a money-call reply must name it: `{s|p}-{infix}-{suffix}` with a
/// three-character lower-case infix (`chg`, `cnl`, `shp`, `aut`; php-sdk Services/IdService.php)
/// and an alphanumeric suffix. The id is stored and later put into URL paths, so anything else
/// (`../x`, `s-chg-1?x`, empty) is never taken as a transaction id.
fn valid_tx_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("s-").or_else(|| s.strip_prefix("p-")) else {
        return false;
    };
    let Some((infix, suffix)) = rest.split_once('-') else {
        return false;
    };
    s.len() <= 64
        && infix.len() == 3
        && infix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !suffix.is_empty()
        && suffix.chars().all(|c| c.is_ascii_alphanumeric())
}

// Unzer ids are `{s|p}-{infix}-{suffix}` (php-sdk Services/IdService.php); anything but a plain
// id ([`valid_id`]) is refused before it can reach a URL path.
use crate::psp::webhook::valid_id;

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
    crate::psp::checked_base(&raw, "/v1/…")
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
        let client = crate::tls::http_client_builder()
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
        UnzerPsp::for_config_resolved(config, timeouts, &SecretRef::resolve_local)
    }

    /// As [`UnzerPsp::for_config_with`], resolving each private key with `resolve` (the
    /// process's resolver: relative `file:` paths, or the AWS extension on Lambda).
    pub fn for_config_resolved(
        config: &Config,
        timeouts: UnzerTimeouts,
        resolve: &(dyn Fn(&SecretRef) -> Result<Secret, String> + Sync),
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
            let secret =
                resolve(&m.account.private_key).map_err(|e| err(format!("private_key: {e}")))?;
            if !(secret.expose().starts_with("s-priv-") || secret.expose().starts_with("p-priv-")) {
                return Err(err(
                    "private_key: an Unzer private key starts with s-priv- or p-priv-".into(),
                ));
            }
            if secret.expose().get(..2) != m.account.public_key.get(..2) {
                return Err(err(
                    "public_key and private_key belong to different environments (s- vs p-)".into(),
                ));
            }
            api_base(m.account.api_host.as_deref(), &secret).map_err(&err)?;
            match keys.get(&m.account.public_key) {
                Some(prev) if prev != &secret => {
                    return Err(err(format!(
                        "public key {} is configured with two different private keys",
                        m.account.public_key
                    )));
                }
                _ => {
                    keys.insert(m.account.public_key.clone(), secret);
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
        let key = self.keys.get(&account.account.public_key).ok_or_else(|| {
            format!(
                "no Unzer private key loaded for public key {}",
                account.account.public_key
            )
        })?;
        let base = api_base(account.account.api_host.as_deref(), key)?;
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
        read_capped(resp, status).await
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
            Transport::TooBig(m) => {
                return Err(PspError::BadReply(format!("GET {path}: {m}")));
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

    /// The one request of a single-call money operation (everything but a spread refund).
    fn plan(
        &self,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Planned, PspOutcome> {
        let pid = &payment.payment_id;
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
                let (path, reason) = reversal_route(payment)?;
                (path, cancel_body(*amount, reason, reference), Some(*amount))
            }
            // Paylater: payment-level refund POST …/charges/cancels (php-sdk PaylaterCancelTest; docs "Manage Unzer Invoice (upl)").
            // Other types are spread over their charges by `refund_spread`, never planned as one call.
            PspCall::Refund { amount, reason } if transformers::is_paylater(payment.method) => (
                format!("/v1/payments/{pid}/charges/cancels"),
                cancel_body(*amount, Some(transformers::reason_code(*reason)), reference),
                Some(*amount),
            ),
            PspCall::Refund { .. } => {
                return Err(declined(
                    "PAYBRIDGE.ROUTE",
                    format!("a refund on payment {pid} goes over its charges, not as one call"),
                ));
            }
            PspCall::RequestPayment { .. } => {
                return Err(declined(
                    "PAYBRIDGE.UNSUPPORTED",
                    "the Unzer connector makes no payment links",
                ));
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
            Transport::Lost(m) | Transport::TooBig(m) => PspOutcome::Unknown {
                message: format!("POST {path}: {m}; Unzer may have processed it"),
            },
            Transport::Reply { status, body } => classify(status, &body, planned.expect, path),
        }
    }
}

/// A cancel body: `amount` with the optional reason code, carrying the operation's `reference`.
fn cancel_body(
    amount: Money,
    reason: Option<&'static str>,
    reference: &str,
) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(CancelRequest {
        amount: transformers::amount_text(amount),
        reason_code: reason,
        payment_reference: reference.to_string(),
    })
}

/// Where a reversal of `payment` goes, and the reason code it carries: the payment-level
/// authorization cancel for Paylater, else a cancel of the open authorization or of the
/// pending initial charge; declined when the payment has neither.
fn reversal_route(payment: &PspPayment) -> Result<(String, Option<&'static str>), PspOutcome> {
    let pid = &payment.payment_id;
    if transformers::is_paylater(payment.method) {
        // Paylater: payment-level reversal POST …/authorize/cancels (docs "Manage Unzer Invoice (upl)").
        return Ok((format!("/v1/payments/{pid}/authorize/cancels"), None));
    }
    match payment.initial() {
        Some(tx) if tx.kind == TxKind::Authorize && valid_id(&tx.id) => {
            // Reversal on the authorization: POST …/authorize/{autId}/cancels (php-sdk CancelService::cancelAuthorization);
            // a card pre-authorization lives under …/preauthorize/{id} (java-sdk Preauthorization).
            let segment = if tx.id.contains("-preaut-") {
                "preauthorize"
            } else {
                "authorize"
            };
            Ok((
                format!("/v1/payments/{pid}/{segment}/{}/cancels", tx.id),
                None,
            ))
        }
        Some(tx)
            if tx.kind == TxKind::Charge
                && tx.status == TxStatus::Pending
                && transformers::pending_initial_charge(payment.method)
                && valid_id(&tx.id) =>
        {
            // Prepayment/invoice before receipt: cancel the initial charge (docs "Manage Unzer Prepayment": always s-chg-1).
            Ok((
                format!("/v1/payments/{pid}/charges/{}/cancels", tx.id),
                Some("CANCEL"),
            ))
        }
        _ => Err(declined(
            "PAYBRIDGE.ROUTE",
            format!("payment {pid} has no open authorization or pending initial charge to reverse"),
        )),
    }
}

#[cfg(test)]
mod tests;
