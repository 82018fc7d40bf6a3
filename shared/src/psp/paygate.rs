//! Computop Paygate connector: the classic key-value ("KVP") server-to-server API that every
//! public Paygate plugin uses — `inquire.aspx` (the payment's authoritative totals),
//! `capture.aspx`, `credit.aspx` and `reverse.aspx` — each request a `key=value&…` plaintext
//! with its HMAC-SHA256 `MAC`, encrypted in the merchant's envelope ([`envelope`]: Blowfish-ECB,
//! or AES-CBC where Computop switched the account) and posted form-encoded as `MerchantID`,
//! `Len`, `Data`. Wire facts and sources: `shared/reference/paygate.md` (§1.1 endpoints, §1.2
//! envelope, §1.5 MAC, §1.6 replies, §3.2–§3.5 operations, §3.7 codes and ReqId); the reply
//! shapes are in [`transformers`], the notify in [`webhook`].
//!
//! Outcome of a money call ([`PspOutcome`]):
//!
//! | what happened | outcome |
//! |---|---|
//! | `Code` starts with `0`, `mid`/`PayID` ours, `Amount`/`Currency` echo what we sent (where echoed) | `Done` (the step's `XID`) |
//! | `Code` starts with `6` (pending) or `7` (3-D Secure in between) | `Pending` |
//! | `Code` starts with `2` or `4` (error, fatal), encrypted or not | `Declined { Code, Description }` |
//! | the body says "Unexpected exception" (Paygate's answer to wrong credentials), HTTP 401/403/404 | `Declined`, a configuration error |
//! | connect failure (nothing sent), HTTP 429 | `Retryable` |
//! | timeout or reset after sending, 5xx, 408, an unreadable 2xx, a reply for another merchant or payment, or an echo that differs | `Unknown` |
//!
//! `Status` alone never decides (§0.5). Every money call carries `ReqId` = our operation's PSP
//! reference (26 characters, within Paygate's 32): Paygate answers a resubmission with the same
//! `ReqId` with the original result instead of executing it again, once the first reached a
//! final status (§3.7). Paygate's payment reads are totals (`AmountAuth`/`AmountCap`/
//! `AmountCred`), not single transactions carrying references, so reconciliation after an
//! unknown outcome ([`Psp::find_transaction`]) inquires first: a last step still pending is
//! reported pending (never re-sent while open); nothing of the call's kind at the PSP means not
//! done; where the totals leave no room for the call any more, the same
//! request is sent again under the same `ReqId` — Paygate then answers the original result, or
//! refuses for want of room, and moves nothing new either way; where there is room, the app
//! waits its settle time and sends again under the same `ReqId`.
//!
//! Reversal (§3.5): `reverse.aspx` undoes the payment's *last* step, which after a capture is
//! that capture. So it is sent only to cancel a whole authorization nothing was captured from;
//! any other reversal (the rest after a partial capture, part of an authorization) is not sent:
//! it is reported `Done` under a transaction id `unsent-<reference>` and the rest of the
//! authorization expires unused at the acquirer. Paygate has no shipment call (an error here).
//!
//! Secrets: the Blowfish/AES and HMAC passwords never leave this module except as key bytes to
//! the cipher and the MAC; bodies are not logged; [`Secret`] prints `***`.

pub mod envelope;
pub mod transformers;
pub mod webhook;

use crate::config::{Cipher, Config, MethodConfig, PspKind, Secret, SecretRef};
use crate::ledger::{self, PspCall};
use crate::model::{PspPayment, PspTransaction, TxKind, TxStatus};
use crate::psp::{Psp, PspError, PspOutcome};
use async_trait::async_trait;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use transformers::{Reply, ReplyError};
use url::Url;

/// Paygate's production host (§1.1); the test platform is `https://test.computop-paygate.com`.
pub const PRODUCTION_HOST: &str = "https://www.computop-paygate.com";

/// The largest reply body read; a Paygate reply is a few hundred bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Timeouts of the one HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaygateTimeouts {
    /// TCP + TLS connect; a failure here means nothing was sent.
    pub connect: Duration,
    /// The whole request; a timeout here makes a money call's outcome unknown.
    pub request: Duration,
}

impl Default for PaygateTimeouts {
    /// 10 s connect, 60 s per request.
    fn default() -> Self {
        PaygateTimeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Errors building the connector; never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaygateError {
    #[error("Paygate HTTP client could not be built: {0}")]
    Client(String),
    /// A method config is unusable; `config` is `erp/mandant/erp_method`.
    #[error("method config {config}: {message}")]
    Config { config: String, message: String },
}

/// One merchant account: its keys, cipher and API base.
#[derive(Clone)]
pub struct Account {
    pub merchant_id: String,
    pub cipher: Cipher,
    cipher_key: Secret,
    mac_key: Secret,
    base: Url,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("merchant_id", &self.merchant_id)
            .field("cipher", &self.cipher)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Account {
    /// An account from its parts; checks the key lengths the cipher takes.
    pub fn new(
        merchant_id: &str,
        cipher: Cipher,
        cipher_key: Secret,
        mac_key: Secret,
        api_host: Option<&str>,
    ) -> Result<Account, String> {
        let n = cipher_key.expose().len();
        match cipher {
            Cipher::Blowfish if !(4..=56).contains(&n) => {
                return Err("the Blowfish password must be 4 to 56 bytes long".into());
            }
            Cipher::Aes if ![16, 24, 32].contains(&n) => {
                return Err("the AES password must be 16, 24 or 32 bytes long".into());
            }
            _ => {}
        }
        if mac_key.expose().is_empty() {
            return Err("the HMAC password is empty".into());
        }
        Ok(Account {
            merchant_id: merchant_id.to_string(),
            cipher,
            cipher_key,
            mac_key,
            base: api_base(api_host)?,
        })
    }

    /// The account of a method config, its secrets resolved with `resolve`.
    pub fn for_method(m: &MethodConfig, resolve: &Resolver<'_>) -> Result<Account, String> {
        let mac_ref = (m.account.extra.mac_key.as_ref()).ok_or("no hmac_key configured")?;
        let key = resolve(&m.account.private_key)
            .map_err(|e| format!("encryption_key cannot be resolved: {e}"))?;
        let mac = resolve(mac_ref).map_err(|e| format!("hmac_key cannot be resolved: {e}"))?;
        let host = m.account.api_host.as_deref();
        Account::new(
            &m.account.public_key,
            m.account.extra.cipher,
            key,
            mac,
            host,
        )
    }

    fn cipher_key(&self) -> &[u8] {
        self.cipher_key.expose().as_bytes()
    }

    fn mac_key(&self) -> &[u8] {
        self.mac_key.expose().as_bytes()
    }

    /// Whether `other` is the same account with the same secrets.
    fn same_as(&self, other: &Account) -> bool {
        self.merchant_id == other.merchant_id
            && self.cipher == other.cipher
            && self.cipher_key.expose() == other.cipher_key.expose()
            && self.mac_key.expose() == other.mac_key.expose()
            && self.base == other.base
    }

    /// The form a request travels in: `MerchantID`, `Len`, `Data` (the plaintext carries its
    /// `MAC` and `MerchantID` too, §1.2).
    pub fn seal(&self, fields: &[(&str, String)]) -> Result<Vec<(String, String)>, String> {
        let plain = transformers::plaintext(fields)?;
        let (data, len) = envelope::seal(self.cipher, self.cipher_key(), &plain)
            .map_err(|e| format!("cannot encrypt: {e}"))?;
        Ok(vec![
            ("MerchantID".into(), self.merchant_id.clone()),
            ("Len".into(), len.to_string()),
            ("Data".into(), data),
        ])
    }

    /// The request MAC over `PayID*TransID*MerchantID*Amount*Currency` (§1.5).
    pub fn request_mac(
        &self,
        pay_id: &str,
        trans_id: &str,
        amount: &str,
        currency: &str,
    ) -> String {
        let m =
            envelope::request_mac_message(pay_id, trans_id, &self.merchant_id, amount, currency);
        envelope::mac(self.mac_key(), &m)
    }
}

/// A secret resolver of the entry point.
pub type Resolver<'r> = dyn Fn(&SecretRef) -> Result<Secret, String> + Sync + 'r;

/// The Paygate connector: one HTTP client, accounts by MerchantID.
pub struct PaygatePsp {
    client: reqwest::Client,
    accounts: HashMap<String, Account>,
}

impl fmt::Debug for PaygatePsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.accounts.keys().collect();
        ids.sort();
        f.debug_struct("PaygatePsp")
            .field("merchant_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// The API base: `api_host` (tests point it at the simulator) or [`PRODUCTION_HOST`]. Plain
/// `http` only for a loopback host, so a request never crosses a network unencrypted.
pub fn api_base(api_host: Option<&str>) -> Result<Url, String> {
    let raw = api_host.unwrap_or(PRODUCTION_HOST).trim();
    crate::psp::checked_base(raw, "/capture.aspx, …")
}

/// What the transport did with a request.
enum Transport {
    Reply {
        status: StatusCode,
        body: String,
    },
    /// Known not sent (connect failed).
    NotSent(String),
    /// Sent, but no complete reply (timeout, reset, too large).
    Lost(String),
}

impl PaygatePsp {
    /// A connector over these accounts. Builds the one HTTP client (no redirects).
    pub fn new(
        accounts: Vec<Account>,
        timeouts: PaygateTimeouts,
    ) -> Result<PaygatePsp, PaygateError> {
        let client = crate::tls::http_client_builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("paybridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PaygateError::Client(e.to_string()))?;
        let accounts = accounts
            .into_iter()
            .map(|a| (a.merchant_id.clone(), a))
            .collect();
        Ok(PaygatePsp { client, accounts })
    }

    /// The connector for every active Paygate method config, secrets resolved with `resolve`.
    /// Two configs naming one MerchantID must agree on its keys, cipher and host.
    pub fn for_config_resolved(
        config: &Config,
        timeouts: PaygateTimeouts,
        resolve: &Resolver<'_>,
    ) -> Result<PaygatePsp, PaygateError> {
        let mut accounts: Vec<Account> = Vec::new();
        for m in (config.methods.iter()).filter(|m| m.active && m.psp == PspKind::Paygate) {
            let err = |message: String| PaygateError::Config {
                config: format!("{}/{}/{}", m.erp, m.mandant, m.erp_method),
                message,
            };
            let a = Account::for_method(m, resolve).map_err(err)?;
            match accounts.iter().find(|b| b.merchant_id == a.merchant_id) {
                Some(b) if !b.same_as(&a) => {
                    return Err(err(format!(
                        "MerchantID {} is configured elsewhere with other keys, cipher or api_host",
                        a.merchant_id
                    )));
                }
                Some(_) => {}
                None => accounts.push(a),
            }
        }
        PaygatePsp::new(accounts, timeouts)
    }

    fn account(&self, cfg: &MethodConfig) -> Result<&Account, String> {
        self.accounts.get(&cfg.account.public_key).ok_or_else(|| {
            format!(
                "no Paygate account for MerchantID {} in this process",
                cfg.account.public_key
            )
        })
    }

    /// Posts one sealed request to `{base}/{endpoint}`.
    async fn post(
        &self,
        account: &Account,
        endpoint: &str,
        form: &[(String, String)],
    ) -> Transport {
        let url = format!(
            "{}{endpoint}",
            account.base.origin().ascii_serialization() + "/"
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let sent = self
            .client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Transport::NotSent(format!("{endpoint}: {e}")),
            Err(e) => return Transport::Lost(format!("{endpoint}: {e}")),
        };
        let status = resp.status();
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Transport::Lost(format!(
                "{endpoint}: reply larger than {MAX_REPLY_BYTES} bytes"
            ));
        }
        let mut resp = resp;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) if buf.len() + c.len() > MAX_REPLY_BYTES => {
                    return Transport::Lost(format!(
                        "{endpoint}: reply larger than {MAX_REPLY_BYTES} bytes"
                    ));
                }
                Ok(Some(c)) => buf.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => return Transport::Lost(format!("{endpoint}: reply lost: {e}")),
            }
        }
        Transport::Reply {
            status,
            body: String::from_utf8_lossy(&buf).into_owned(),
        }
    }

    /// `inquire.aspx` by PayID (§3.2): the payment's totals as a [`PspPayment`].
    async fn inquire(&self, cfg: &MethodConfig, pay_id: &str) -> Result<PspPayment, PspError> {
        let account = self.account(cfg).map_err(PspError::Auth)?;
        if !transformers::valid_pay_id(pay_id) {
            return Err(PspError::NotFound(format!(
                "{pay_id:?} is not a Paygate PayID (32 letters or digits)"
            )));
        }
        // The MAC calculator's inquire form: `PayID*TransID*MerchantID**` with no TransID.
        let mac = account.request_mac(pay_id, "", "", "");
        let fields = [
            ("MerchantID", account.merchant_id.clone()),
            ("PayID", pay_id.to_string()),
            ("MAC", mac),
        ];
        let form = account.seal(&fields).map_err(PspError::Auth)?;
        let (status, body) = match self.post(account, "inquire.aspx", &form).await {
            Transport::Reply { status, body } => (status, body),
            Transport::NotSent(m) | Transport::Lost(m) => return Err(PspError::Unavailable(m)),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(PspError::Unavailable(format!(
                "inquire: HTTP {}",
                status.as_u16()
            )));
        }
        if matches!(status.as_u16(), 401 | 403 | 404) {
            return Err(PspError::Auth(format!(
                "inquire: HTTP {} (wrong api_host or account?)",
                status.as_u16()
            )));
        }
        let reply = Reply::read(&body, account).map_err(|e| match e {
            ReplyError::Credentials => PspError::Auth(e.to_string()),
            other => PspError::BadReply(format!("inquire: {other}")),
        })?;
        transformers::payment(&reply, account, cfg, pay_id)
    }

    /// Sends one money call (capture, credit, reverse) under `ReqId` = `reference`.
    async fn money_call(
        &self,
        account: &Account,
        endpoint: &str,
        payment: &PspPayment,
        amount: crate::money::Money,
        reference: &str,
    ) -> PspOutcome {
        let pay_id = payment.payment_id.as_str();
        let minor = match amount.to_minor() {
            Ok(m) if m > 0 => m.to_string(),
            Ok(_) => {
                return declined(
                    "PAYBRIDGE.AMOUNT",
                    format!("amount {amount} is not positive"),
                );
            }
            Err(e) => return declined("PAYBRIDGE.AMOUNT", e.to_string()),
        };
        let currency = amount.currency().code().to_string();
        let trans_id = transformers::trans_id(payment, reference);
        let mac = account.request_mac(pay_id, &trans_id, &minor, &currency);
        let fields = [
            ("MerchantID", account.merchant_id.clone()),
            ("PayID", pay_id.to_string()),
            ("TransID", trans_id.clone()),
            ("Amount", minor.clone()),
            ("Currency", currency.clone()),
            ("ReqId", reference.to_string()),
            ("MAC", mac),
        ];
        let form = match account.seal(&fields) {
            Ok(f) => f,
            Err(e) => return declined("PAYBRIDGE.REQUEST", e),
        };
        let (status, body) = match self.post(account, endpoint, &form).await {
            Transport::Reply { status, body } => (status, body),
            Transport::NotSent(message) => return PspOutcome::Retryable { message },
            Transport::Lost(m) => {
                return PspOutcome::Unknown {
                    message: format!("{m}; Paygate may have processed it"),
                };
            }
        };
        let expect = transformers::Expect {
            pay_id,
            amount: &minor,
            currency: &currency,
        };
        transformers::outcome(endpoint, status, &body, account, &expect)
    }
}

fn declined(code: &str, message: impl Into<String>) -> PspOutcome {
    PspOutcome::Declined {
        code: code.into(),
        message: message.into(),
    }
}

/// The transaction id reported for a reversal paybridge does not send (see the module doc).
pub fn unsent_id(reference: &str) -> String {
    format!("unsent-{reference}")
}

/// Printable ASCII without Paygate's separators, cut to `max` characters (`RefNr`,
/// `OrderDesc`: §1.2 — `&` and `=` cannot be escaped; RefNr is ASCII only).
fn ascii_field(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| match c {
            'ä' => 'a',
            'ö' => 'o',
            'ü' => 'u',
            'Ä' => 'A',
            'Ö' => 'O',
            'Ü' => 'U',
            'ß' => 's',
            c if c.is_ascii_graphic() && c != '&' && c != '=' => c,
            _ => ' ',
        })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

impl PaygatePsp {
    /// The hosted payment page link (§3.1): `paymentPage.aspx` with `MerchantID`, `Len`, `Data`
    /// and `Language` outside; inside `TransID` and `ReqId` = the request's reference (a link
    /// opened twice, or e-mailed again, answers the first payment instead of making another,
    /// §3.7), `RefNr` = the order number, `Amount` in minor units, `Currency`, `OrderDesc`, the
    /// three URLs (no query strings, §1.2), `Capture=MANUAL` for reserved methods (captured per
    /// invoice later) or `AUTO` for the ones booked at once, `Response=encrypt`, `MsgVer=2.0`
    /// (3-D Secure 2) and the MAC over `*TransID*MerchantID*Amount*Currency` (no PayID yet).
    pub fn link(
        &self,
        cfg: &MethodConfig,
        request: &crate::psp::LinkRequest,
    ) -> Result<String, PspError> {
        let account = self.account(cfg).map_err(PspError::Auth)?;
        let minor = request
            .amount
            .to_minor()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                PspError::BadReply(format!("amount {} is not positive", request.amount))
            })?
            .to_string();
        let currency = request.amount.currency().code().to_string();
        for url in [
            &request.notify_url,
            &request.success_url,
            &request.failure_url,
        ] {
            if url.contains('?') || url.contains('#') || url.len() > 256 {
                return Err(PspError::Auth(format!(
                    "{url:?}: Paygate takes absolute URLs without parameters, at most 256 characters"
                )));
            }
        }
        let booked = matches!(
            cfg.account.extra.psp_method.as_deref(),
            Some("paypal" | "sofort")
        );
        let mac = account.request_mac("", &request.reference, &minor, &currency);
        let fields = [
            ("MerchantID", account.merchant_id.clone()),
            ("TransID", request.reference.clone()),
            ("ReqId", request.reference.clone()),
            ("RefNr", ascii_field(&request.order_id, 30)),
            ("Amount", minor),
            ("Currency", currency),
            ("OrderDesc", ascii_field(&request.description, 768)),
            ("URLSuccess", request.success_url.clone()),
            ("URLFailure", request.failure_url.clone()),
            ("URLNotify", request.notify_url.clone()),
            (
                "Capture",
                if booked { "AUTO" } else { "MANUAL" }.to_string(),
            ),
            ("Response", "encrypt".to_string()),
            ("MsgVer", "2.0".to_string()),
            ("MAC", mac),
        ];
        let form = account.seal(&fields).map_err(PspError::Auth)?;
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&form).append_pair("Language", "de");
        Ok(format!(
            "{}/paymentPage.aspx?{}",
            account.base.origin().ascii_serialization(),
            query.finish()
        ))
    }
}

#[async_trait]
impl Psp for PaygatePsp {
    fn payment_link(
        &self,
        cfg: &MethodConfig,
        request: &crate::psp::LinkRequest,
    ) -> Result<String, PspError> {
        self.link(cfg, request)
    }

    async fn fetch(&self, cfg: &MethodConfig, payment_id: &str) -> Result<PspPayment, PspError> {
        self.inquire(cfg, payment_id).await
    }

    async fn execute(
        &self,
        cfg: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let account = match self.account(cfg) {
            Ok(a) => a,
            Err(e) => return declined("PAYBRIDGE.CONFIG", e),
        };
        match call {
            PspCall::Capture { amount } => {
                self.money_call(account, "capture.aspx", payment, *amount, reference)
                    .await
            }
            PspCall::Refund { amount, .. } => {
                self.money_call(account, "credit.aspx", payment, *amount, reference)
                    .await
            }
            PspCall::Reverse { amount } => {
                if transformers::reversal_is_last_step(payment, *amount) {
                    self.money_call(account, "reverse.aspx", payment, *amount, reference)
                        .await
                } else {
                    tracing::info!(
                        payment = %payment.payment_id,
                        %amount,
                        "Paygate reversal not sent: reverse.aspx would undo the last capture; the rest of the authorization expires unused"
                    );
                    PspOutcome::Done {
                        tx_id: unsent_id(reference),
                    }
                }
            }
            PspCall::Shipment { .. } => declined(
                "PAYBRIDGE.UNSUPPORTED",
                "Paygate has no shipment call; no Paygate method needs one",
            ),
            // The link is built by `payment_link`; nothing is sent to Paygate for it.
            PspCall::RequestPayment { .. } => declined(
                "PAYBRIDGE.UNSUPPORTED",
                "a payment request is a link (Psp::payment_link), not a server call",
            ),
        }
    }

    /// See the module doc: totals first, then (only where the totals leave no room for the
    /// call) the same request under the same `ReqId`.
    async fn find_transaction(
        &self,
        cfg: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let kind = match call {
            PspCall::Capture { .. } => TxKind::Charge,
            PspCall::Refund { .. } => TxKind::CancelCharge,
            PspCall::Reverse { .. } => TxKind::CancelAuthorize,
            PspCall::Shipment { .. } | PspCall::RequestPayment { .. } => return Ok(None),
        };
        // Paygate's last step is still open (pending): ours, maybe. Never "not sent" then: a
        // resubmission under the same ReqId would run again while the first is open (§3.7).
        let last_pending = transformers::last_pending_id(&payment.payment_id);
        if let Some(t) = payment
            .transactions
            .iter()
            .find(|t| t.id == last_pending && t.status == TxStatus::Pending)
        {
            return Ok(Some(PspTransaction {
                kind,
                reference: Some(reference.to_string()),
                amount: call.amount().unwrap_or(t.amount),
                ..t.clone()
            }));
        }
        if let PspCall::Reverse { amount } = call
            && !transformers::reversal_is_last_step(payment, *amount)
            && !payment.transactions.iter().any(|t| t.kind == kind)
        {
            // Never sent (see `execute`): nothing to find, and "sending" it again is local.
            return Ok(None);
        }
        let any_of_kind = payment
            .transactions
            .iter()
            .any(|t| t.kind == kind && t.status == TxStatus::Success && t.amount.is_positive());
        if !any_of_kind {
            return Ok(None);
        }
        let pos = payment
            .position()
            .map_err(|e| PspError::BadReply(e.to_string()))?;
        if ledger::check_call(call, &pos, cfg.rounding_tolerance).is_ok() {
            // Room for it: not provable either way; the app re-sends under the same ReqId
            // after its settle time, which Paygate answers with the original if it was done.
            return Ok(None);
        }
        let account = self.account(cfg).map_err(PspError::Auth)?;
        let (endpoint, amount) = match call {
            PspCall::Capture { amount } => ("capture.aspx", *amount),
            PspCall::Refund { amount, .. } => ("credit.aspx", *amount),
            PspCall::Reverse { amount } => ("reverse.aspx", *amount),
            PspCall::Shipment { .. } | PspCall::RequestPayment { .. } => return Ok(None),
        };
        match self
            .money_call(account, endpoint, payment, amount, reference)
            .await
        {
            PspOutcome::Done { tx_id } => Ok(Some(PspTransaction {
                id: tx_id,
                kind,
                status: TxStatus::Success,
                amount,
                reference: Some(reference.to_string()),
                at: None,
            })),
            PspOutcome::Pending { tx_id } => Ok(Some(PspTransaction {
                id: tx_id,
                kind,
                status: TxStatus::Pending,
                amount,
                reference: Some(reference.to_string()),
                at: None,
            })),
            PspOutcome::Declined { .. } => Ok(None),
            PspOutcome::Retryable { message } | PspOutcome::Unknown { message } => {
                Err(PspError::Unavailable(message))
            }
        }
    }
}

#[cfg(test)]
mod tests;
