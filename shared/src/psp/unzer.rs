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

pub mod transformers;
pub mod webhook;

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
            // Paylater: payment-level refund POST …/charges/cancels (php-sdk PaylaterCancelTest; docs "Manage Unzer Invoice (upl)").
            // Other types are spread over their charges by `refund_spread`, never planned as one call.
            PspCall::Refund { amount, reason } if transformers::is_paylater(payment.method) => (
                format!("/v1/payments/{pid}/charges/cancels"),
                cancel(*amount, Some(transformers::reason_code(*reason))),
                Some(*amount),
            ),
            PspCall::Refund { .. } => {
                return Err(declined(
                    "PAYBRIDGE.ROUTE",
                    format!("a refund on payment {pid} goes over its charges, not as one call"),
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

    /// Every charge cancel of the payment that carries `reference`, in the payment's order: GETs
    /// each `cancel-charge` transaction (the payment's list has no references).
    async fn refund_parts(
        &self,
        t: &Target<'_>,
        view: &PaymentView,
        reference: &str,
    ) -> Result<Vec<RefundPart>, PspError> {
        let pid = view.payment.payment_id.as_str();
        let mut parts = Vec::new();
        for tx in view.txs.iter().filter(|x| x.kind == TxKind::CancelCharge) {
            let path = self.local_path(t, pid, &tx.url)?;
            let reply: WireReply = self.get_json(t, &path, pid).await?;
            if !reply.carries(reference) {
                continue;
            }
            parts.push(RefundPart {
                id: tx.id.clone(),
                charge: tx.parent_charge.clone(),
                amount: tx.amount,
                status: tx_status_of(&reply, tx),
            });
        }
        Ok(parts)
    }

    /// [`Psp::find_transaction`] for a spread refund: sums the parts carrying `reference` (see
    /// the contract there).
    async fn find_refund(
        &self,
        t: &Target<'_>,
        view: &PaymentView,
        amount: Money,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let parts = self.refund_parts(t, view, reference).await?;
        let tally = RefundTally::of(&parts, amount.currency()).map_err(PspError::BadReply)?;
        let order = tally
            .counted
            .cmp_to(&amount)
            .map_err(|e| PspError::BadReply(e.to_string()))?;
        let tx = |id: &str, status| PspTransaction {
            id: id.to_string(),
            kind: TxKind::CancelCharge,
            status,
            amount,
            reference: Some(reference.to_string()),
        };
        if order.is_gt() {
            return Err(PspError::BadReply(format!(
                "cancels carrying our reference {reference} add up to {}, more than the {amount} refund: {}",
                tally.counted,
                list_parts(&parts)
            )));
        }
        if let Some(p) = &tally.pending {
            return Ok(Some(tx(p, TxStatus::Pending)));
        }
        if order.is_eq()
            && let Some(last) = &tally.last
        {
            return Ok(Some(tx(last, TxStatus::Success)));
        }
        if !tally.counted.is_positive()
            && let Some(e) = &tally.last_error
        {
            return Ok(Some(tx(e, TxStatus::Error)));
        }
        if tally.counted.is_positive() {
            tracing::debug!(
                payment = %view.payment.payment_id,
                refunded = %tally.counted,
                %amount,
                "refund partly done under this reference; the remainder may be sent"
            );
        }
        Ok(None)
    }

    /// A refund on a non-Paylater payment: reads what already carries `reference`, then cancels
    /// the remainder on the charges in order, one `…/charges/{chgId}/cancels` per part, each with
    /// the same `paymentReference` and reason code (php-sdk CancelService::cancelPaymentCharges;
    /// per part php-sdk CancelService::cancelCharge).
    async fn refund_spread(
        &self,
        t: &Target<'_>,
        payment: &PspPayment,
        amount: Money,
        reason: crate::ledger::RefundReason,
        reference: &str,
    ) -> PspOutcome {
        let pid = payment.payment_id.as_str();
        let view = match self.view(t, pid).await {
            Ok(v) => v,
            Err(e) => return read_failed(e),
        };
        let earlier = match self.refund_parts(t, &view, reference).await {
            Ok(p) => p,
            Err(e) => return read_failed(e),
        };
        let parts = match plan_refund(&view, amount, &earlier) {
            Ok(RefundPlan::Complete { tx_id }) => {
                tracing::debug!(payment = pid, %tx_id, "refund already complete under this reference; nothing sent");
                return PspOutcome::Done { tx_id };
            }
            Ok(RefundPlan::Waiting { tx_id }) => return PspOutcome::Pending { tx_id },
            Ok(RefundPlan::Send(parts)) => parts,
            Err(outcome) => return outcome,
        };
        let reason = transformers::reason_code(reason);
        let mut refunded: Vec<RefundPart> = earlier
            .into_iter()
            .filter(|p| p.status == TxStatus::Success)
            .collect();
        let n = parts.len();
        for (i, (charge, part)) in parts.iter().enumerate() {
            let body = serde_json::to_value(CancelRequest {
                amount: transformers::amount_text(*part),
                reason_code: Some(reason),
                payment_reference: reference.to_string(),
            });
            let body = match body {
                Ok(b) => b,
                Err(e) => return declined("PAYBRIDGE.REQUEST", format!("request body: {e}")),
            };
            let planned = Planned {
                path: format!("/v1/payments/{pid}/charges/{charge}/cancels"),
                body,
                expect: Some(*part),
            };
            let outcome = self.post(t, &planned).await;
            let what = || {
                let not_sent = parts[i + 1..]
                    .iter()
                    .map(|(c, m)| format!("{m} on {c}"))
                    .collect::<Vec<_>>();
                let refunded_sum =
                    Money::sum(amount.currency(), refunded.iter().map(|p| &p.amount))
                        .map_or_else(|e| e.to_string(), |m| m.to_string());
                format!(
                    "refund of {amount}: part {} of {n} ({part} on {charge}); refunded so far under this reference: {refunded_sum} ({}); not sent: {}",
                    i + 1,
                    list_parts(&refunded),
                    if not_sent.is_empty() {
                        "nothing".into()
                    } else {
                        not_sent.join(", ")
                    }
                )
            };
            match outcome {
                PspOutcome::Done { tx_id } => refunded.push(RefundPart {
                    id: tx_id,
                    charge: Some(charge.clone()),
                    amount: *part,
                    status: TxStatus::Success,
                }),
                // Not final yet: the rest waits until it is (reconciliation sees it pending).
                PspOutcome::Pending { tx_id } => return PspOutcome::Pending { tx_id },
                PspOutcome::Unknown { message } => {
                    return PspOutcome::Unknown {
                        message: format!("{}: outcome unknown: {message}", what()),
                    };
                }
                // Nothing moved at all: the plain outcome.
                PspOutcome::Retryable { .. } | PspOutcome::Declined { .. }
                    if refunded.is_empty() =>
                {
                    return outcome;
                }
                // Parts went through: keep the in-flight mark, reconciliation finds them.
                PspOutcome::Retryable { message } => {
                    return PspOutcome::Unknown {
                        message: format!("{}: not sent ({message}); send the rest again", what()),
                    };
                }
                PspOutcome::Declined { code, message } => {
                    return declined(
                        "PAYBRIDGE.REFUND_PARTIAL",
                        format!(
                            "{}: declined by Unzer ({code}: {message}); the refund is only partly done — refund the rest by hand",
                            what()
                        ),
                    );
                }
            }
        }
        match refunded.last() {
            Some(last) => PspOutcome::Done {
                tx_id: last.id.clone(),
            },
            None => declined(
                "PAYBRIDGE.AMOUNTS",
                format!("refund of {amount}: no part sent"),
            ),
        }
    }
}

/// One charge cancel carrying an operation's reference: a part of a (spread) refund.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefundPart {
    /// The cancel id (`s-cnl-N`).
    id: String,
    /// The charge it refunds; `None` for a payment-level cancel.
    charge: Option<String>,
    amount: Money,
    status: TxStatus,
}

impl fmt::Display for RefundPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.amount)?;
        if let Some(c) = &self.charge {
            write!(f, " on {c}")?;
        }
        if self.status != TxStatus::Success {
            write!(f, " ({:?})", self.status)?;
        }
        Ok(())
    }
}

fn list_parts<'a>(parts: impl IntoIterator<Item = &'a RefundPart>) -> String {
    let v: Vec<String> = parts.into_iter().map(ToString::to_string).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What the cancels carrying one reference add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefundTally {
    /// Sum of the successful and pending parts (error parts moved nothing).
    counted: Money,
    /// The last part still pending, if any.
    pending: Option<String>,
    /// The last successful or pending part.
    last: Option<String>,
    /// The last part in error state.
    last_error: Option<String>,
}

impl RefundTally {
    fn of(parts: &[RefundPart], currency: crate::money::Currency) -> Result<RefundTally, String> {
        let mut t = RefundTally {
            counted: Money::zero(currency),
            pending: None,
            last: None,
            last_error: None,
        };
        for p in parts {
            let add = |acc: Money| {
                acc.checked_add(p.amount)
                    .map_err(|e| format!("refund part {}: {e}", p.id))
            };
            match p.status {
                TxStatus::Error => t.last_error = Some(p.id.clone()),
                TxStatus::Pending => {
                    t.counted = add(t.counted)?;
                    t.pending = Some(p.id.clone());
                    t.last = Some(p.id.clone());
                }
                TxStatus::Success => {
                    t.counted = add(t.counted)?;
                    t.last = Some(p.id.clone());
                }
            }
        }
        Ok(t)
    }
}

/// What a refund still needs, given the parts already carrying its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RefundPlan {
    /// The parts add up to the amount and all succeeded: the last part's id.
    Complete { tx_id: String },
    /// A part is still pending: send nothing until it is final.
    Waiting { tx_id: String },
    /// Send these parts (charge id, amount), in this order.
    Send(Vec<(String, Money)>),
}

/// Plans a refund over the successful charges in charge order (php-sdk
/// CancelService::cancelPaymentCharges), each part up to the charge's refundable rest (its
/// amount less the non-failed cancels on it), for what `ours` (the parts already carrying our
/// reference) leaves of `amount`. Declines, before anything is sent, when the remainder exceeds
/// what is refundable or when our reference already carries more than the amount.
fn plan_refund(
    view: &PaymentView,
    amount: Money,
    ours: &[RefundPart],
) -> Result<RefundPlan, PspOutcome> {
    let amounts = |e: String| declined("PAYBRIDGE.AMOUNTS", e);
    let cur = amount.currency();
    let tally = RefundTally::of(ours, cur).map_err(amounts)?;
    let order = tally
        .counted
        .cmp_to(&amount)
        .map_err(|e| amounts(e.to_string()))?;
    if order.is_gt() {
        return Err(declined(
            "PAYBRIDGE.REFUND_REFERENCE",
            format!(
                "cancels carrying this refund's reference add up to {}, more than the {amount} asked ({}); check by hand",
                tally.counted,
                list_parts(ours)
            ),
        ));
    }
    if let Some(tx_id) = tally.pending {
        return Ok(RefundPlan::Waiting { tx_id });
    }
    if order.is_eq()
        && let Some(tx_id) = tally.last
    {
        return Ok(RefundPlan::Complete { tx_id });
    }
    let mut left = amount
        .checked_sub(tally.counted)
        .map_err(|e| amounts(e.to_string()))?;
    let not_failed = |r: &&TxRef| r.kind == TxKind::CancelCharge && r.status != TxStatus::Error;
    // A payment-level cancel (`…/charges/cancels/{id}`, e.g. made in Unzer Insights) names no
    // charge; it still lowers what the payment can refund in total.
    let unattributed = Money::sum(
        cur,
        view.txs
            .iter()
            .filter(not_failed)
            .filter(|r| r.parent_charge.is_none())
            .map(|r| &r.amount),
    )
    .map_err(|e| amounts(e.to_string()))?;
    let mut rests: Vec<(String, Money)> = Vec::new();
    for c in view
        .txs
        .iter()
        .filter(|t| t.kind == TxKind::Charge && t.status == TxStatus::Success)
        .filter(|t| valid_id(&t.id))
    {
        let refunded = Money::sum(
            cur,
            view.txs
                .iter()
                .filter(not_failed)
                .filter(|r| r.parent_charge.as_deref() == Some(c.id.as_str()))
                .map(|r| &r.amount),
        );
        let rest = refunded
            .and_then(|r| c.amount.saturating_sub(r))
            .map_err(|e| amounts(format!("charge {}: {e}", c.id)))?;
        rests.push((c.id.clone(), rest));
    }
    let total = Money::sum(cur, rests.iter().map(|(_, m)| m))
        .and_then(|t| t.saturating_sub(unattributed))
        .map_err(|e| amounts(e.to_string()))?;
    if left
        .cmp_to(&total)
        .map_err(|e| amounts(e.to_string()))?
        .is_gt()
    {
        let listing = rests
            .iter()
            .map(|(id, m)| format!("{id} {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut message = format!(
            "a refund of {left} exceeds what is refundable: {total} (per charge: {}",
            if listing.is_empty() {
                "nothing"
            } else {
                &listing
            }
        );
        if unattributed.is_positive() {
            message.push_str(&format!("; less {unattributed} refunded at payment level"));
        }
        message.push(')');
        if tally.counted.is_positive() {
            message.push_str(&format!(
                "; already refunded under this reference: {} ({}) of {amount}",
                tally.counted,
                list_parts(ours.iter().filter(|p| p.status != TxStatus::Error))
            ));
        }
        return Err(declined("PAYBRIDGE.REFUND_EXCEEDS", message));
    }
    let mut parts = Vec::new();
    for (charge, rest) in rests {
        if !left.is_positive() {
            break;
        }
        if !rest.is_positive() {
            continue;
        }
        let take = rest.min(left).map_err(|e| amounts(e.to_string()))?;
        left = left.checked_sub(take).map_err(|e| amounts(e.to_string()))?;
        parts.push((charge, take));
    }
    if left.is_positive() || parts.is_empty() {
        return Err(amounts(format!(
            "could not spread {amount} over the charges (left over: {left})"
        )));
    }
    Ok(RefundPlan::Send(parts))
}

/// A payment or transaction read that failed before a refund sent anything.
fn read_failed(e: PspError) -> PspOutcome {
    let message = format!("reading the payment before the refund failed, nothing sent: {e}");
    match e {
        PspError::Unavailable(_) => PspOutcome::Retryable { message },
        PspError::Auth(_) => auth_declined("PAYBRIDGE.AUTH".into(), &message),
        PspError::NotFound(_) | PspError::BadReply(_) => declined("PAYBRIDGE.REFUND_READ", message),
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
        ReplyKind::Success { tx_id } | ReplyKind::Pending { tx_id } if !valid_tx_id(&tx_id) => {
            PspOutcome::Unknown {
                message: format!(
                    "POST {path}: HTTP {code} reply names {:?}, not an Unzer transaction id; \
                     not treated as done",
                    tx_id.chars().take(80).collect::<String>()
                ),
            }
        }
        ReplyKind::Unclear { tx_id: Some(tx_id) } if !valid_tx_id(&tx_id) => PspOutcome::Unknown {
            message: format!(
                "POST {path}: HTTP {code} reply names {:?}, not an Unzer transaction id",
                tx_id.chars().take(80).collect::<String>()
            ),
        },
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

/// A fetched transaction's status: the reply's flags, else the payment list's status.
fn tx_status_of(reply: &WireReply, tx: &TxRef) -> TxStatus {
    let has_flags =
        reply.is_success.is_some() || reply.is_pending.is_some() || reply.is_error.is_some();
    if has_flags { reply.status() } else { tx.status }
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
        if let PspCall::Refund { amount, reason } = call
            && !transformers::is_paylater(payment.method)
        {
            return self
                .refund_spread(&t, payment, *amount, *reason, reference)
                .await;
        }
        let planned = match self.plan(payment, call, reference) {
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

    /// Reconciliation: the transaction `call` made under `reference`, read from Unzer (the
    /// payment's list has no references, so each candidate transaction of the call's kind is
    /// fetched and its `paymentReference` / `invoiceId` / `orderId` compared).
    ///
    /// A refund on a non-Paylater payment may consist of several charge cancels (one per charge,
    /// see the module doc); they are summed — every `cancel-charge` carrying `reference`, failed
    /// ones left out:
    ///
    /// - they add up to the refund's amount and all succeeded: `Some` with the last part's id,
    ///   kind `CancelCharge`, status `Success` and the refund's amount — the refund is done;
    /// - some part is still pending: `Some` with that part's id and status `Pending` — look again
    ///   later; nothing may be sent meanwhile;
    /// - they add up to less and none is pending (including none at all): `None`. Calling
    ///   [`Psp::execute`] again with the same call and reference is then safe: it reads the
    ///   parts again and sends only the remainder, so the total never exceeds the amount (it
    ///   answers `Done` without sending anything if the parts are complete by then). Note that
    ///   the parts already refunded show in the payment's refunded position, so a caller that
    ///   checks the whole amount against the refundable rest must add them back;
    /// - nothing succeeded or is pending but a part failed: `Some` with status `Error`, as for
    ///   a single call Unzer refused;
    /// - they add up to more than the amount (only if something else used our reference):
    ///   `Err(PspError::BadReply)` naming the parts — a human must look.
    ///
    /// Other calls (and Paylater refunds, one payment-level cancel) return the single
    /// transaction carrying `reference`; one carrying it with another amount is an error.
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
        if let PspCall::Refund { amount, .. } = call
            && !transformers::is_paylater(payment.method)
        {
            return self.find_refund(&t, &view, *amount, reference).await;
        }
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
            return Ok(Some(PspTransaction {
                id: tx.id.clone(),
                kind,
                status: tx_status_of(&reply, tx),
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

    fn view(txs: &[(&str, &str, &str, &str)]) -> PaymentView {
        let base = "https://sbx-api.unzer.com/v1/payments/s-pay-1";
        let wire: WirePayment = serde_json::from_value(serde_json::json!({
            "id": "s-pay-1",
            "state": {"id": 1},
            "currency": "EUR",
            "resources": {"typeId": "s-crd-abc"},
            "transactions": txs.iter().map(|(kind, status, path, amount)| serde_json::json!({
                "type": kind, "status": status, "url": format!("{base}/{path}"), "amount": amount,
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        PaymentView::try_from(wire).unwrap()
    }

    fn part(id: &str, charge: &str, minor: i64, status: TxStatus) -> RefundPart {
        RefundPart {
            id: id.into(),
            charge: Some(charge.into()),
            amount: eur(minor),
            status,
        }
    }

    #[test]
    fn refund_plan_spreads_in_charge_order_and_sends_only_the_remainder() {
        let v = view(&[
            ("authorize", "success", "authorize/s-aut-1", "100.0000"),
            ("charge", "success", "charges/s-chg-1", "60.0000"),
            ("charge", "error", "charges/s-chg-2", "5.0000"),
            ("charge", "success", "charges/s-chg-3", "40.0000"),
        ]);
        assert_eq!(
            plan_refund(&v, eur(7000), &[]),
            Ok(RefundPlan::Send(vec![
                ("s-chg-1".into(), eur(6000)),
                ("s-chg-3".into(), eur(1000))
            ]))
        );
        // after the first part: only the rest, on the next charge with money left
        let v = view(&[
            ("authorize", "success", "authorize/s-aut-1", "100.0000"),
            ("charge", "success", "charges/s-chg-1", "60.0000"),
            ("charge", "success", "charges/s-chg-3", "40.0000"),
            (
                "cancel-charge",
                "success",
                "charges/s-chg-1/cancels/s-cnl-1",
                "60.0000",
            ),
        ]);
        let first = part("s-cnl-1", "s-chg-1", 6000, TxStatus::Success);
        assert_eq!(
            plan_refund(&v, eur(7000), std::slice::from_ref(&first)),
            Ok(RefundPlan::Send(vec![("s-chg-3".into(), eur(1000))]))
        );
        assert_eq!(
            plan_refund(&v, eur(6000), std::slice::from_ref(&first)),
            Ok(RefundPlan::Complete {
                tx_id: "s-cnl-1".into()
            })
        );
        let pending = part("s-cnl-1", "s-chg-1", 6000, TxStatus::Pending);
        assert_eq!(
            plan_refund(&v, eur(7000), &[pending]),
            Ok(RefundPlan::Waiting {
                tx_id: "s-cnl-1".into()
            })
        );
        // a failed part moved nothing and is not counted
        let failed = part("s-cnl-9", "s-chg-3", 1000, TxStatus::Error);
        assert_eq!(
            plan_refund(&v, eur(7000), &[first.clone(), failed]),
            Ok(RefundPlan::Send(vec![("s-chg-3".into(), eur(1000))]))
        );
        assert!(matches!(
            plan_refund(&v, eur(5000), std::slice::from_ref(&first)),
            Err(PspOutcome::Declined { code, .. }) if code == "PAYBRIDGE.REFUND_REFERENCE"
        ));
        // 40.00 left in total; 30.01 more than the 60.00 already refunded is too much
        assert!(matches!(
            plan_refund(&v, eur(10001), &[first]),
            Err(PspOutcome::Declined { code, message })
                if code == "PAYBRIDGE.REFUND_EXCEEDS" && message.contains("s-cnl-1 60.00 EUR on s-chg-1")
        ));
    }

    #[test]
    fn refund_plan_counts_payment_level_cancels_against_the_total() {
        let v = view(&[
            ("charge", "success", "charges/s-chg-1", "60.0000"),
            ("charge", "success", "charges/s-chg-2", "40.0000"),
            (
                "cancel-charge",
                "success",
                "charges/cancels/s-cnl-1",
                "50.0000",
            ),
        ]);
        assert!(matches!(
            plan_refund(&v, eur(5001), &[]),
            Err(PspOutcome::Declined { code, message })
                if code == "PAYBRIDGE.REFUND_EXCEEDS" && message.contains("less 50.00 EUR refunded at payment level")
        ));
        assert_eq!(
            plan_refund(&v, eur(5000), &[]),
            Ok(RefundPlan::Send(vec![("s-chg-1".into(), eur(5000))]))
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
