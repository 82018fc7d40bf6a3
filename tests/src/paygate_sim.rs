//! Computop Paygate simulator (classic key-value "KVP" API).
//!
//! An axum server on a loopback port that answers like Paygate's server-to-server endpoints
//! `capture.aspx`, `credit.aspx`, `reverse.aspx` and `inquire.aspx`, serves a minimal Hosted
//! Payment Page `paymentPage.aspx` (the target of an e-mailed payment link), and sends URLNotify
//! calls with Paygate's retry schedule. Paths match case-insensitively, like IIS. Wire facts
//! follow `shared/reference/paygate.md` (§0–§3) with the public pages and plugins it cites;
//! each reply names its source beside the code. Where the docs are silent the simulator is
//! strict and says so (`[INF]`); `[U]` marks a fact nobody could confirm.
//!
//! **Envelope.** Requests arrive as `MerchantID`, `Len`, `Data` (form POST or GET query; both
//! are read, like ASP.NET's merged `Request[...]` `[INF]`). `Data` is opened with the merchant's
//! Blowfish password through `paybridge_core::psp::paygate::envelope` (never reimplemented
//! here) and must carry `MerchantID` again (the docs mark both mandatory; Spryker omits it in
//! captures and is said to work, the simulator refuses that `[INF]` strict) and a `MAC` over
//! `PayID*TransID*MerchantID*Amount*Currency` (inquire: Amount and Currency empty, as the docs'
//! MAC calculator does). Replies are `Len=…&Data=…`, encrypted, without a MAC (reference §1.5:
//! MACs only on URLSuccess/URLFailure/URLNotify).
//!
//! **Error shapes** (reference §1.6 lists three; which case gets which is `[INF]`):
//! - no or unknown plain `MerchantID`: the simulator has no key, so an **unencrypted**
//!   `mid=…&Status=FAILED&Code=…&Description=…` body (Magento2 `Request/Base.php` handles it);
//! - `Data` that decrypts to non-ASCII (a wrong Blowfish password): the text
//!   **`Unexpected exception`** (what FATCHIP `CTAPITestService` looks for on wrong
//!   credentials);
//! - everything else (missing `Len`/`Data`, `Len` not fitting, a missing or malformed mandatory
//!   field, inner `MerchantID` ≠ plain one, a wrong MAC, an unknown PayID, a refused action): an
//!   **encrypted** reply with `Status=FAILED` and a code of the documented structure
//!   ([`codes`]).
//!
//! All server-to-server replies are HTTP 200 `text/plain` `[INF]` except the faults'; the
//! hosted page answers 200 (form), 302 (result redirect) or 400 (HTML error page).
//!
//! **Idempotency** (developer.computop.com "ReqId"; reference §3.7): a request whose `ReqId`
//! was already used by the same merchant, once that first action reached a final status (OK or
//! FAILED, not PENDING), gets the original reply back (same XID) and nothing is executed. `[INF]`
//! the scope is the merchant ("may be assigned only once"): the original reply comes back even
//! if the resubmission names another endpoint or payment. Requests refused before reaching a
//! payment (bad MAC, missing field, unknown PayID) do not consume the ReqId.
//!
//! **Test controls**: merchants, payments of each kind, [`PaygateSim::settle`], [`Fault`]s for
//! the next N requests, a lagging inquire, a request log without keys, [`PaygateSim::notify`]
//! and [`PaygateSim::notify_with_retries`], and [`PaygateSim::pay_link`] to "pay" a link over
//! HTTP. Not simulated: AES accounts (§1.4), `Custom`/`Plain` echoes, `inquire24.aspx`,
//! `RefNrChange.aspx`, the "first notify must have been answered" precondition.

pub mod codes;
mod hpp;
mod model;
mod net;
mod wire;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use codes::DECLINED;
use model::{Payment, Refusal};
pub use model::{PaymentKind, SimPaymentView, SimStep, StepKind};
use net::{Cut, CutListener};
use paybridge_core::psp::paygate::envelope::{self, EnvelopeError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use wire::{Fields, get, get_nonempty};

/// Paygate's notify repeats after the first send: +1 min, +8 min, +27 min, +1:04 h, +2:05 h,
/// +3:36 h, +5:43 h, +8:32 h (n³ minutes; the last one about 21 h 36 min after the first).
/// Source: docs.axepta.bnpparibas "Payment notification – URL Notify" (a Computop white
/// label), reference §1.7. Each entry is the wait before that repeat.
pub const NOTIFY_RETRY_WAITS: [Duration; 8] = [
    Duration::from_secs(60),
    Duration::from_secs(8 * 60),
    Duration::from_secs(27 * 60),
    Duration::from_secs(64 * 60),
    Duration::from_secs(125 * 60),
    Duration::from_secs(216 * 60),
    Duration::from_secs(343 * 60),
    Duration::from_secs(512 * 60),
];

/// How long the simulator waits for a notify receiver. `[INF]` Paygate's timeout is not
/// documented.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

const TAG_PAY: u64 = 1;
const TAG_XID: u64 = 2;
const TAG_TOKEN: u64 = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An endpoint of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Capture,
    Credit,
    Reverse,
    Inquire,
    /// `paymentPage.aspx`: the hosted page (the e-mailed link).
    PaymentPage,
    /// `paymentPage.aspx/pay`: the page's own form post (the simulator's, not Paygate's).
    PaymentPagePay,
}

impl Endpoint {
    /// The path under [`PaygateSim::base_url`].
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Capture => "/capture.aspx",
            Endpoint::Credit => "/credit.aspx",
            Endpoint::Reverse => "/reverse.aspx",
            Endpoint::Inquire => "/inquire.aspx",
            Endpoint::PaymentPage => "/paymentPage.aspx",
            Endpoint::PaymentPagePay => "/paymentPage.aspx/pay",
        }
    }

    fn from_path(path: &str) -> Option<Endpoint> {
        let p = path.to_ascii_lowercase();
        [
            Endpoint::Capture,
            Endpoint::Credit,
            Endpoint::Reverse,
            Endpoint::Inquire,
            Endpoint::PaymentPage,
            Endpoint::PaymentPagePay,
        ]
        .into_iter()
        .find(|e| e.path().to_ascii_lowercase() == p)
    }

    fn server_to_server(self) -> bool {
        matches!(
            self,
            Endpoint::Capture | Endpoint::Credit | Endpoint::Reverse | Endpoint::Inquire
        )
    }

    fn action(self) -> Option<StepKind> {
        match self {
            Endpoint::Capture => Some(StepKind::Capture),
            Endpoint::Credit => Some(StepKind::Credit),
            Endpoint::Reverse => Some(StepKind::Reversal),
            _ => None,
        }
    }
}

/// A fault for the next N server-to-server requests it applies to (the hosted page is never
/// faulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500, nothing processed (the request is still logged).
    ServerErrorBefore,
    /// Process the request, then answer HTTP 500.
    ServerErrorAfter,
    /// Process the request, then hold the reply this long (past the client's timeout).
    TimeoutAfter(Duration),
    /// Process the request, then cut the connection without a reply.
    DropAfter,
    /// Refuse with this code: the action is recorded as a `FAILED` step (its ReqId consumed,
    /// FAILED being final), nothing moved; an inquire answers `FAILED` with the code.
    Decline { code: String, description: String },
    /// Capture, credit, reverse only: the step is recorded `PENDING` (code `6…`), no money shown
    /// until [`PaygateSim::settle`]; its ReqId is not consumed (open status, §3.7).
    Pending,
    /// Answer the unencrypted error shape `mid=…&Status=FAILED&Code=40200000&…`, nothing
    /// processed (reference §1.6, Magento2 `Request/Base.php`).
    Unencrypted,
}

impl Fault {
    fn applies_to(&self, ep: Endpoint) -> bool {
        match self {
            Fault::Pending => ep.action().is_some(),
            _ => ep.server_to_server(),
        }
    }
}

/// A payment to create directly (as if the customer had paid in a shop).
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub merchant_id: String,
    pub trans_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub kind: PaymentKind,
    pub ref_nr: Option<String>,
}

/// One request the simulator received. Decrypted fields are shown as sent (the `MAC`
/// included); the merchant's passwords are never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    pub endpoint: Endpoint,
    pub method: String,
    /// The plain `MerchantID` outside `Data`.
    pub merchant_id: Option<String>,
    /// The decrypted fields (empty when `Data` could not be opened); for
    /// [`Endpoint::PaymentPagePay`] the form fields.
    pub fields: Fields,
    /// What the client got: 200, 302, 400, 500, … (0 when the connection was cut).
    pub http_status: u16,
    /// `Status` and `Code` of the reply the simulator built (also when a fault then hid it).
    pub status: Option<String>,
    pub code: Option<String>,
    /// The reply was the stored original of an earlier request with this ReqId.
    pub replayed: bool,
}

impl SimCall {
    /// A decrypted field, case-insensitive.
    pub fn field(&self, key: &str) -> Option<&str> {
        get(&self.fields, key)
    }
}

/// One notify the simulator sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNotify {
    pub pay_id: String,
    pub url: String,
    /// The decrypted fields (with their MAC).
    pub fields: Fields,
    /// The receiver's HTTP status, or why there was none.
    pub result: Result<u16, String>,
}

#[derive(Clone)]
struct Merchant {
    blowfish: Vec<u8>,
    hmac: Vec<u8>,
}

struct Armed {
    fault: Fault,
    remaining: usize,
    endpoint: Option<Endpoint>,
}

/// A final reply kept for its ReqId.
#[derive(Clone)]
struct Stored {
    fields: Fields,
    /// Hosted page: the redirect went to URLFailure.
    failed: bool,
}

struct Session {
    mid: String,
    req: hpp::HostedRequest,
    used: bool,
}

struct NotifyJob {
    pay_id: String,
    url: String,
    form: Fields,
    fields: Fields,
}

enum After {
    Reply,
    Delay(Duration),
    Kill,
}

struct Processed {
    status: u16,
    content_type: &'static str,
    body: String,
    location: Option<String>,
    after: After,
    /// `Status`, `Code` of the built reply, for the log.
    result: Option<(String, String)>,
    replayed: bool,
}

impl Processed {
    fn new(status: u16, content_type: &'static str, body: String) -> Processed {
        Processed {
            status,
            content_type,
            body,
            location: None,
            after: After::Reply,
            result: None,
            replayed: false,
        }
    }

    fn text(status: u16, body: &str) -> Processed {
        Processed::new(status, "text/plain; charset=utf-8", body.to_string())
    }

    fn html(status: u16, body: String) -> Processed {
        Processed::new(status, "text/html; charset=utf-8", body)
    }

    /// An unencrypted KVP reply (reference §1.6).
    fn plain(fields: Fields) -> Processed {
        let result = status_code(&fields);
        let mut p = Processed::text(200, &wire::join_kvp(&fields));
        p.result = result;
        p
    }

    /// `Len=…&Data=…` (reference §1.6; developer.computop.com "Programming basics").
    fn envelope(key: &[u8], fields: Fields) -> Processed {
        let result = status_code(&fields);
        let mut p = match envelope::encrypt(key, &wire::join_kvp(&fields)) {
            Ok((data, len)) => Processed::text(200, &format!("Len={len}&Data={data}")),
            Err(_) => Processed::text(500, "Unexpected exception"),
        };
        p.result = result;
        p
    }

    fn redirect(location: String, result: Option<(String, String)>) -> Processed {
        let mut p = Processed::text(302, "");
        p.location = Some(location);
        p.result = result;
        p
    }
}

fn status_code(fields: &[(String, String)]) -> Option<(String, String)> {
    Some((
        get(fields, "Status")?.to_string(),
        get(fields, "Code")?.to_string(),
    ))
}

fn f(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// The error reply of a request (capture/credit/reverse/inquire "Response parameters"): `mid`,
/// the PayID and TransID as sent, `Status=FAILED`, `Code`, `Description`. `[INF]` no XID when
/// no step was made.
fn error_fields(mid: &str, inner: &[(String, String)], code: &str, description: &str) -> Fields {
    let mut out = vec![f("mid", mid)];
    if let Some(p) = get(inner, "PayID") {
        out.push(f("PayID", p));
    }
    if let Some(t) = get(inner, "TransID") {
        out.push(f("TransID", t));
    }
    out.push(f("Status", "FAILED"));
    out.push(f("Code", code));
    out.push(f("Description", description));
    out
}

/// The result of a payment for URLSuccess/URLFailure/URLNotify (reference §3.1; D2b in §4
/// shows the order `mid, PayID, XID, TransID, Status, Description, Code, MAC`), MAC over
/// `PayID*TransID*mid*Status*Code` (developer.computop.com Hash MAC page 37193624).
fn result_fields(
    p: &Payment,
    xid: &str,
    status: &str,
    code: &str,
    description: &str,
    hmac: &[u8],
) -> Fields {
    let mut out = vec![
        f("mid", &p.mid),
        f("PayID", &p.pay_id),
        f("XID", xid),
        f("TransID", &p.trans_id),
    ];
    if let Some(r) = &p.ref_nr {
        out.push(f("RefNr", r));
    }
    if let Some(u) = &p.user_data {
        out.push(f("UserData", u));
    }
    out.push(f("Status", status));
    out.push(f("Description", description));
    out.push(f("Code", code));
    let msg = envelope::response_mac_message(&p.pay_id, &p.trans_id, &p.mid, status, code);
    out.push(f("MAC", envelope::mac(hmac, &msg)));
    out
}

fn describe(code: &str) -> &'static str {
    match code.as_bytes().first() {
        Some(b'0') => "success",
        Some(b'6') | Some(b'7') => "pending",
        _ => "failed",
    }
}

struct SimState {
    merchants: HashMap<String, Merchant>,
    payments: Vec<Payment>,
    salt: u64,
    seq: u64,
    faults: Vec<Armed>,
    inquire_lag: usize,
    log: Vec<SimCall>,
    notifies: Vec<SimNotify>,
    /// (merchant, ReqId) → the original final reply.
    replies: HashMap<(String, String), Stored>,
    sessions: HashMap<String, Session>,
    plain_mid_in_notify: bool,
}

impl SimState {
    fn next_id(&mut self, tag: u64) -> String {
        self.seq += 1;
        wire::id32(self.salt, tag, self.seq)
    }

    fn take_fault(&mut self, ep: Endpoint) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|a| a.fault.applies_to(ep) && a.endpoint.is_none_or(|e| e == ep))?;
        let armed = &mut self.faults[i];
        let fault = armed.fault.clone();
        armed.remaining -= 1;
        if armed.remaining == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }

    #[allow(clippy::too_many_arguments)]
    fn open_payment(
        &mut self,
        mid: &str,
        trans_id: &str,
        ref_nr: Option<String>,
        user_data: Option<String>,
        req_id: Option<String>,
        amount: i64,
        currency: &str,
        kind: PaymentKind,
        failure: Option<(String, String)>,
    ) -> String {
        let pay_id = self.next_id(TAG_PAY);
        let step = |s: &mut SimState, kind: StepKind, status: &str, code: &str, d: &str| SimStep {
            kind,
            xid: s.next_id(TAG_XID),
            amount,
            currency: currency.to_string(),
            req_id: req_id.clone(),
            status: status.to_string(),
            code: code.to_string(),
            description: d.to_string(),
            trans_id: trans_id.to_string(),
            ref_nr: ref_nr.clone(),
            undoes: None,
        };
        let steps = match kind {
            PaymentKind::Reserved => vec![step(
                self,
                StepKind::Auth,
                "AUTHORIZED",
                codes::OK,
                "success",
            )],
            PaymentKind::Booked => vec![
                step(self, StepKind::Auth, "OK", codes::OK, "success"),
                step(self, StepKind::Capture, "OK", codes::OK, "success"),
            ],
            PaymentKind::Pending => vec![step(
                self,
                StepKind::Auth,
                "PENDING",
                codes::PENDING,
                "pending",
            )],
            PaymentKind::Failed => {
                let (code, d) =
                    failure.unwrap_or_else(|| (codes::DECLINED.to_string(), "declined".into()));
                vec![step(self, StepKind::Auth, "FAILED", &code, &d)]
            }
        };
        self.payments.push(Payment {
            pay_id: pay_id.clone(),
            mid: mid.to_string(),
            trans_id: trans_id.to_string(),
            ref_nr,
            currency: currency.to_string(),
            kind,
            user_data,
            steps,
        });
        pay_id
    }

    fn payment(&self, pay_id: &str) -> Option<&Payment> {
        self.payments.iter().find(|p| p.pay_id == pay_id)
    }

    // ---- server-to-server: capture.aspx, credit.aspx, reverse.aspx, inquire.aspx ----

    fn serve_s2s(&mut self, ep: Endpoint, method: &str, outer: &Fields) -> Processed {
        let fault = self.take_fault(ep);
        let mut call = SimCall {
            endpoint: ep,
            method: method.to_string(),
            merchant_id: get(outer, "MerchantID").map(str::to_string),
            fields: Vec::new(),
            http_status: 0,
            status: None,
            code: None,
            replayed: false,
        };
        let mut out = self.s2s(ep, outer, fault.as_ref(), &mut call);
        match &fault {
            Some(Fault::ServerErrorAfter) => {
                let mut e = Processed::html(500, "<h1>500 Internal Server Error</h1>".into());
                e.result = out.result.take();
                e.replayed = out.replayed;
                out = e;
            }
            Some(Fault::TimeoutAfter(d)) => out.after = After::Delay(*d),
            Some(Fault::DropAfter) => out.after = After::Kill,
            _ => {}
        }
        call.http_status = if matches!(out.after, After::Kill) {
            0
        } else {
            out.status
        };
        if let Some((s, c)) = &out.result {
            call.status = Some(s.clone());
            call.code = Some(c.clone());
        }
        call.replayed = out.replayed;
        self.log.push(call);
        out
    }

    fn s2s(
        &mut self,
        ep: Endpoint,
        outer: &Fields,
        fault: Option<&Fault>,
        call: &mut SimCall,
    ) -> Processed {
        // No key without a known MerchantID: the unencrypted shape (Magento2 Request/Base.php).
        let Some(mid) = get_nonempty(outer, "MerchantID").map(str::to_string) else {
            return Processed::plain(vec![
                f("Status", "FAILED"),
                f("Code", codes::missing(codes::param::MERCHANT_ID)),
                f("Description", "MerchantID missing"),
            ]);
        };
        let Some(m) = self.merchants.get(&mid).cloned() else {
            return Processed::plain(vec![
                f("mid", &mid),
                f("Status", "FAILED"),
                f("Code", codes::unknown(codes::param::MERCHANT_ID)),
                f("Description", "MerchantID unknown"),
            ]);
        };
        let refuse = |inner: &[(String, String)], code: String, d: &str| {
            Processed::envelope(&m.blowfish, error_fields(&mid, inner, &code, d))
        };
        let inner = match open(&m, outer) {
            Ok(inner) => inner,
            Err(Opened::WrongKey) => return Processed::text(200, "Unexpected exception"),
            Err(Opened::Refused(code, d)) => return refuse(&[], code, &d),
        };
        call.fields = inner.clone();
        match fault {
            Some(Fault::ServerErrorBefore) => {
                return Processed::html(500, "<h1>500 Internal Server Error</h1>".into());
            }
            Some(Fault::Unencrypted) => {
                return Processed::plain(error_fields(
                    &mid,
                    &inner,
                    codes::INTERNAL_UNENCRYPTED,
                    "internal error (unencrypted reply)",
                ));
            }
            _ => {}
        }
        if let Err((code, d)) = check_s2s(ep, &mid, &inner) {
            return refuse(&inner, code, &d);
        }
        let text = |k: &str| get(&inner, k).unwrap_or_default().to_string();
        let (pay_id, trans_id) = (text("PayID"), text("TransID"));
        // MAC: PayID*TransID*MerchantID*Amount*Currency; inquire with Amount/Currency empty
        // (developer.computop.com Hash MAC calculator; reference §1.5).
        let (amount, currency) = match ep {
            Endpoint::Inquire => (String::new(), String::new()),
            _ => (text("Amount"), text("Currency")),
        };
        let msg = envelope::request_mac_message(&pay_id, &trans_id, &mid, &amount, &currency);
        if !envelope::mac_matches(&m.hmac, &msg, &text("MAC")) {
            return refuse(
                &inner,
                codes::crypto(codes::param::MAC),
                "MAC does not match",
            );
        }
        // ReqId: the original final reply comes back, nothing runs (developer.computop.com "ReqId").
        if ep != Endpoint::Inquire
            && let Some(req_id) = get_nonempty(&inner, "ReqId")
            && let Some(stored) = self.replies.get(&(mid.clone(), req_id.to_string()))
        {
            let mut p = Processed::envelope(&m.blowfish, stored.fields.clone());
            p.replayed = true;
            return p;
        }
        let Some(idx) = self
            .payments
            .iter()
            .position(|p| p.pay_id == pay_id && p.mid == mid)
        else {
            return refuse(
                &inner,
                codes::unknown(codes::param::PAY_ID),
                "PayID unknown",
            );
        };
        // [INF] strict: follow-up requests carry the payment's own TransID (what every plugin sends).
        if !trans_id.is_empty() && trans_id != self.payments[idx].trans_id {
            return refuse(
                &inner,
                codes::invalid(codes::param::TRANS_ID),
                "TransID is not the payment's",
            );
        }
        let fields = match ep.action() {
            None => self.inquire(&mid, idx, fault),
            Some(kind) => self.action(&mid, idx, kind, &inner, fault),
        };
        Processed::envelope(&m.blowfish, fields)
    }

    /// inquire.aspx reply (developer.computop.com "Status inquiries", page 26247867; Spryker
    /// InquireConverter): `mid, PayID, XID, TransID, Status` (of the inquiry), `Code,
    /// Description, AmountAuth, AmountCap, AmountCred, Currency, LastStatus`. `[INF]` XID is the
    /// last step's; amounts are plain integers, `0` when nothing (Spryker compares with `"0"`).
    fn inquire(&mut self, mid: &str, idx: usize, fault: Option<&Fault>) -> Fields {
        let p = &self.payments[idx];
        if let Some(Fault::Decline { code, description }) = fault {
            return vec![
                f("mid", mid),
                f("PayID", &p.pay_id),
                f("TransID", &p.trans_id),
                f("Status", "FAILED"),
                f("Code", code),
                f("Description", description),
            ];
        }
        let seen = if self.inquire_lag > 0 {
            self.inquire_lag -= 1;
            &p.steps[..p.steps.len().saturating_sub(1)]
        } else {
            &p.steps[..]
        };
        let a = model::amounts(seen);
        vec![
            f("mid", mid),
            f("PayID", &p.pay_id),
            f(
                "XID",
                seen.last().map(|s| s.xid.as_str()).unwrap_or_default(),
            ),
            f("TransID", &p.trans_id),
            f("Status", "OK"),
            f("Code", codes::OK),
            f("Description", "success"),
            f("AmountAuth", a.auth.to_string()),
            f("AmountCap", a.cap.to_string()),
            f("AmountCred", a.cred.to_string()),
            f("Currency", &p.currency),
            f("LastStatus", Payment::last_status_of(seen)),
        ]
    }

    /// capture.aspx / credit.aspx / reverse.aspx: one new step and its reply (Spryker
    /// CaptureConverter/RefundConverter/ReverseConverter, Magento2 Capture.php; reference
    /// §3.3–§3.5): `mid, PayID, XID, TransID, Status` (`OK`/`FAILED`/`PENDING`), `Code,
    /// Description, Amount, Currency, RefNr`.
    fn action(
        &mut self,
        mid: &str,
        idx: usize,
        kind: StepKind,
        inner: &Fields,
        fault: Option<&Fault>,
    ) -> Fields {
        let amount = wire::amount(get(inner, "Amount").unwrap_or_default()).unwrap_or(0);
        let currency = get(inner, "Currency").unwrap_or_default().to_string();
        let req_id = get_nonempty(inner, "ReqId").map(str::to_string);
        let xid = self.next_id(TAG_XID);
        let p = &mut self.payments[idx];
        let ref_nr = get_nonempty(inner, "RefNr")
            .map(str::to_string)
            .or_else(|| p.ref_nr.clone());
        let checked = match fault {
            Some(Fault::Decline { code, description }) => Err(Refusal {
                code: code.clone(),
                description: description.clone(),
            }),
            _ => p.check(kind, amount, &currency),
        };
        let (status, code, description, undoes) = match checked {
            Err(r) => ("FAILED", r.code, r.description, None),
            Ok(undoes) if fault == Some(&Fault::Pending) => (
                "PENDING",
                codes::PENDING.to_string(),
                "pending".to_string(),
                undoes,
            ),
            Ok(undoes) => ("OK", codes::OK.to_string(), "success".to_string(), undoes),
        };
        let step = SimStep {
            kind,
            xid: xid.clone(),
            amount,
            currency: currency.clone(),
            req_id: req_id.clone(),
            status: status.to_string(),
            code: code.clone(),
            description: description.clone(),
            trans_id: p.trans_id.clone(),
            ref_nr: ref_nr.clone(),
            undoes,
        };
        p.steps.push(step);
        let mut reply = vec![
            f("mid", mid),
            f("PayID", &p.pay_id),
            f("XID", &xid),
            f("TransID", &p.trans_id),
            f("Status", status),
            f("Code", &code),
            f("Description", &description),
            f("Amount", amount.to_string()),
            f("Currency", &currency),
        ];
        if let Some(r) = ref_nr {
            reply.push(f("RefNr", r));
        }
        if status != "PENDING"
            && let Some(r) = req_id
        {
            self.replies.insert(
                (mid.to_string(), r),
                Stored {
                    fields: reply.clone(),
                    failed: status == "FAILED",
                },
            );
        }
        reply
    }

    // ---- hosted payment page ----

    fn page(&mut self, method: &str, outer: &Fields) -> Processed {
        let mut call = SimCall {
            endpoint: Endpoint::PaymentPage,
            method: method.to_string(),
            merchant_id: get(outer, "MerchantID").map(str::to_string),
            fields: Vec::new(),
            http_status: 0,
            status: None,
            code: None,
            replayed: false,
        };
        let out = self.page_inner(outer, &mut call);
        call.http_status = out.status;
        if let Some((s, c)) = &out.result {
            call.status = Some(s.clone());
            call.code = Some(c.clone());
        }
        call.replayed = out.replayed;
        self.log.push(call);
        out
    }

    fn page_inner(&mut self, outer: &Fields, call: &mut SimCall) -> Processed {
        let error = |code: String, d: &str| {
            let mut p = Processed::html(400, hpp::error_page(&code, d));
            p.result = Some(("FAILED".into(), code));
            p
        };
        let Some(mid) = get_nonempty(outer, "MerchantID").map(str::to_string) else {
            return error(
                codes::missing(codes::param::MERCHANT_ID),
                "MerchantID missing",
            );
        };
        let Some(m) = self.merchants.get(&mid).cloned() else {
            return error(
                codes::unknown(codes::param::MERCHANT_ID),
                "MerchantID unknown",
            );
        };
        let inner = match open(&m, outer) {
            Ok(inner) => inner,
            Err(Opened::WrongKey) => {
                return Processed::html(400, hpp::error_page("", "Unexpected exception"));
            }
            Err(Opened::Refused(code, d)) => return error(code, &d),
        };
        call.fields = inner.clone();
        match get_nonempty(&inner, "MerchantID") {
            None => {
                return error(
                    codes::missing(codes::param::MERCHANT_ID),
                    "MerchantID missing in Data",
                );
            }
            Some(x) if x != mid => {
                return error(
                    codes::invalid(codes::param::MERCHANT_ID),
                    "MerchantID in Data differs",
                );
            }
            Some(_) => {}
        }
        let req = match hpp::check(&inner) {
            Ok(r) => r,
            Err((code, d)) => return error(code, &d),
        };
        // MAC of an initial payment: *TransID*MerchantID*Amount*Currency (no PayID yet; P3).
        let msg =
            envelope::request_mac_message("", &req.trans_id, &mid, &req.amount_text, &req.currency);
        if !envelope::mac_matches(&m.hmac, &msg, &req.mac) {
            return error(codes::crypto(codes::param::MAC), "MAC does not match");
        }
        if let Some(p) = self.replay_page(&mid, &req) {
            return p;
        }
        // [INF] A TransID already paid without a ReqId is refused rather than paid twice or
        // silently deduplicated: only ReqId deduplicates (developer.computop.com "ReqId").
        if self.payments.iter().any(|p| {
            p.mid == mid
                && p.trans_id == req.trans_id
                && matches!(p.kind, PaymentKind::Reserved | PaymentKind::Booked)
        }) {
            return error(
                codes::already_present(codes::param::TRANS_ID),
                "TransID already paid",
            );
        }
        let token = self.next_id(TAG_TOKEN);
        let language = get_nonempty(outer, "Language").map(str::to_string);
        let html = hpp::form_page(&mid, &req, &token, language.as_deref());
        self.sessions.insert(
            token,
            Session {
                mid,
                req,
                used: false,
            },
        );
        Processed::html(200, html)
    }

    /// A hosted request whose ReqId already has a final result: redirect with the original
    /// result (developer.computop.com "ReqId": the original status comes back, no new payment).
    fn replay_page(&self, mid: &str, req: &hpp::HostedRequest) -> Option<Processed> {
        let stored = self.replies.get(&(mid.to_string(), req.req_id.clone()?))?;
        let m = self.merchants.get(mid)?;
        let target = if stored.failed {
            &req.url_failure
        } else {
            &req.url_success
        };
        let mut p = Processed::redirect(
            redirect_url(target, &m.blowfish, &stored.fields, req.encrypt_response),
            status_code(&stored.fields),
        );
        p.replayed = true;
        Some(p)
    }

    fn pay(&mut self, outer: &Fields) -> (Processed, Option<NotifyJob>) {
        let mut call = SimCall {
            endpoint: Endpoint::PaymentPagePay,
            method: "POST".into(),
            merchant_id: None,
            fields: outer.clone(),
            http_status: 0,
            status: None,
            code: None,
            replayed: false,
        };
        let (out, job) = self.pay_inner(outer, &mut call);
        call.http_status = out.status;
        if let Some((s, c)) = &out.result {
            call.status = Some(s.clone());
            call.code = Some(c.clone());
        }
        call.replayed = out.replayed;
        self.log.push(call);
        (out, job)
    }

    fn pay_inner(&mut self, outer: &Fields, call: &mut SimCall) -> (Processed, Option<NotifyJob>) {
        let error = |code: String, d: &str| {
            let mut p = Processed::html(400, hpp::error_page(&code, d));
            p.result = Some(("FAILED".into(), code));
            (p, None)
        };
        let Some(token) = get_nonempty(outer, "token") else {
            return error(codes::missing(codes::param::TOKEN), "token missing");
        };
        let Some(session) = self.sessions.get_mut(token) else {
            return error(codes::unknown(codes::param::TOKEN), "token unknown");
        };
        if session.used {
            return error(
                codes::no_longer_valid(codes::param::TOKEN),
                "token already used",
            );
        }
        session.used = true;
        let (mid, req) = (session.mid.clone(), session.req.clone());
        call.merchant_id = Some(mid.clone());
        let Some(m) = self.merchants.get(&mid).cloned() else {
            return error(
                codes::unknown(codes::param::MERCHANT_ID),
                "MerchantID unknown",
            );
        };
        if let Some(p) = self.replay_page(&mid, &req) {
            return (p, None);
        }
        let action = get(outer, "action").unwrap_or_default();
        let (kind, failure, keep_req_id) = match action {
            // [INF] a customer's cancel never reached an acquirer: a FAILED payment whose ReqId
            // stays free, so the same link can still be paid.
            "cancel" => (
                PaymentKind::Failed,
                Some((
                    codes::CUSTOMER_CANCELLED.to_string(),
                    "cancelled by the customer".to_string(),
                )),
                false,
            ),
            "pay" => match hpp::simulation_code(&req.order_desc) {
                // OrderDesc=Test:nnnn forces the result nnnn ("Test Guide"); 0000 succeeds.
                Some(c) if c != "0000" => (
                    PaymentKind::Failed,
                    Some((codes::simulated(c), format!("simulated result {c}"))),
                    true,
                ),
                _ if req.manual => (PaymentKind::Reserved, None, true),
                _ => (PaymentKind::Booked, None, true),
            },
            _ => return error(codes::unknown(codes::param::NONE), "action unknown"),
        };
        let pay_id = self.open_payment(
            &mid,
            &req.trans_id,
            req.ref_nr.clone(),
            req.user_data.clone(),
            req.req_id.clone(),
            req.amount,
            &req.currency,
            kind,
            failure,
        );
        let p = self.payment(&pay_id).expect("just created");
        let last = p.steps.last().expect("a payment has its first step");
        let fields = result_fields(
            p,
            &last.xid,
            &last.status,
            &last.code,
            &last.description,
            &m.hmac,
        );
        let failed = last.status == "FAILED";
        if keep_req_id && let Some(r) = &req.req_id {
            self.replies.insert(
                (mid.clone(), r.clone()),
                Stored {
                    fields: fields.clone(),
                    failed,
                },
            );
        }
        let job = self.notify_job(&pay_id, &req.url_notify, None);
        let target = if failed {
            &req.url_failure
        } else {
            &req.url_success
        };
        let result = status_code(&fields);
        let location = redirect_url(target, &m.blowfish, &fields, req.encrypt_response);
        (Processed::redirect(location, result), job)
    }

    // ---- notify ----

    /// The notify for the payment's current state (its last step) or `status_override`
    /// (`Status`, `Code`): decrypted `mid, PayID, XID, TransID, RefNr?, UserData?, Status,
    /// Description, Code, MAC` (reference §1.7, §3.1), encrypted as `Len`/`Data`, plus a plain
    /// `MerchantID` when configured (`[U]`: no public source shows one).
    fn notify_job(
        &self,
        pay_id: &str,
        url: &str,
        status_override: Option<(&str, &str)>,
    ) -> Option<NotifyJob> {
        let p = self.payment(pay_id)?;
        let m = self.merchants.get(&p.mid)?;
        let last = p.steps.last()?;
        let (status, code, description) = match status_override {
            Some((s, c)) => (s.to_string(), c.to_string(), describe(c).to_string()),
            None => (
                last.status.clone(),
                last.code.clone(),
                last.description.clone(),
            ),
        };
        let fields = result_fields(p, &last.xid, &status, &code, &description, &m.hmac);
        let (data, len) = envelope::encrypt(&m.blowfish, &wire::join_kvp(&fields)).ok()?;
        let mut form = vec![f("Len", len.to_string()), f("Data", data)];
        if self.plain_mid_in_notify {
            form.push(f("MerchantID", &p.mid));
        }
        Some(NotifyJob {
            pay_id: pay_id.to_string(),
            url: url.to_string(),
            form,
            fields,
        })
    }
}

/// URLSuccess/URLFailure with the result: `Len`/`Data` when `Response=encrypt`, else the plain
/// fields (developer.computop.com: "If you have specified Response=encrypt, the parameters are
/// sent Blowfish encrypted"). The URLs carry no query of their own (checked on the request).
fn redirect_url(target: &str, key: &[u8], fields: &Fields, encrypt: bool) -> String {
    let query = if encrypt {
        match envelope::encrypt(key, &wire::join_kvp(fields)) {
            Ok((data, len)) => wire::encode_form(&[("Len", len.to_string()), ("Data", data)]),
            Err(_) => String::new(),
        }
    } else {
        wire::encode_form(fields)
    };
    format!("{target}?{query}")
}

enum Opened {
    WrongKey,
    Refused(String, String),
}

/// Opens `Len`/`Data` with the merchant's Blowfish password.
fn open(m: &Merchant, outer: &Fields) -> Result<Fields, Opened> {
    use codes::param;
    let refused = |code: String, d: &str| Opened::Refused(code, d.to_string());
    let Some(len) = get_nonempty(outer, "Len") else {
        return Err(refused(codes::missing(param::LEN), "Len missing"));
    };
    let len = match len.parse::<usize>() {
        Ok(n) if len.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(refused(codes::format(param::LEN), "Len format")),
    };
    let Some(data) = get_nonempty(outer, "Data") else {
        return Err(refused(codes::missing(param::DATA), "Data missing"));
    };
    match envelope::decrypt(&m.blowfish, data, len) {
        Ok(plain) => Ok(wire::split_kvp(&plain)),
        Err(EnvelopeError::BadLen { .. }) => {
            Err(refused(codes::crypto(param::LEN), "Len does not fit Data"))
        }
        // Garbage after decryption: the wrong password (FATCHIP CTAPITestService).
        Err(EnvelopeError::NotAscii) | Err(EnvelopeError::BadKey) => Err(Opened::WrongKey),
        Err(_) => Err(refused(
            codes::crypto(param::DATA),
            "Data cannot be decrypted",
        )),
    }
}

/// Mandatory fields and formats of a server-to-server request (developer.computop.com
/// "Capture / Credit / Reversal" 26975539 and "Status inquiries" 26247867: MerchantID, PayID,
/// TransID, Amount, Currency, MAC mandatory for actions; PayID, TransID, MAC for inquire).
/// `[INF]` inquire accepts a missing TransID (FATCHIP sends none and is said to work) and then
/// checks the MAC with it empty.
fn check_s2s(ep: Endpoint, mid: &str, inner: &Fields) -> Result<(), (String, String)> {
    use codes::param;
    let fail = |code: String, d: String| Err((code, d));
    match get_nonempty(inner, "MerchantID") {
        None => {
            return fail(
                codes::missing(param::MERCHANT_ID),
                "MerchantID missing in Data".into(),
            );
        }
        Some(x) if x != mid => {
            return fail(
                codes::invalid(param::MERCHANT_ID),
                "MerchantID in Data differs from the plain one".into(),
            );
        }
        Some(_) => {}
    }
    let mandatory: &[&str] = match ep {
        Endpoint::Inquire => &["PayID", "MAC"],
        _ => &["PayID", "TransID", "Amount", "Currency", "MAC"],
    };
    for k in mandatory {
        if get_nonempty(inner, k).is_none() {
            return fail(codes::missing(codes::param_of(k)), format!("{k} missing"));
        }
    }
    if !wire::an32(get(inner, "PayID").unwrap_or_default()) {
        return fail(codes::format(param::PAY_ID), "PayID format (an32)".into());
    }
    for (k, max) in [("TransID", 64), ("ReqId", 32), ("RefNr", 30)] {
        if let Some(v) = get(inner, k) {
            match wire::ans(v, max) {
                Ok(()) => {}
                Err(true) => {
                    return fail(codes::too_long(codes::param_of(k)), format!("{k} too long"));
                }
                Err(false) => {
                    return fail(codes::format(codes::param_of(k)), format!("{k} format"));
                }
            }
        }
    }
    if ep != Endpoint::Inquire {
        if wire::amount(get(inner, "Amount").unwrap_or_default()).is_err() {
            return fail(
                codes::format(param::AMOUNT),
                "Amount format (n..10, minor units, above 0)".into(),
            );
        }
        if !wire::currency_ok(get(inner, "Currency").unwrap_or_default()) {
            return fail(
                codes::format(param::CURRENCY),
                "Currency format (a3)".into(),
            );
        }
    }
    Ok(())
}

struct Inner {
    state: Mutex<SimState>,
    http: reqwest::Client,
    base_url: String,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running simulator. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct PaygateSim {
    inner: Arc<Inner>,
    _server: Arc<ServerTask>,
}

async fn post_form(http: &reqwest::Client, url: &str, form: &Fields) -> Result<u16, String> {
    // The notify is form-encoded Latin-1 (white-label doc, reference §1.7); the body is ASCII.
    http.post(url)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=iso-8859-1",
        )
        .body(wire::encode_form(form))
        .timeout(NOTIFY_TIMEOUT)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("notify to {url}: {e}"))
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let Some(ep) = Endpoint::from_path(&path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let allowed = method == Method::POST || method == Method::GET && ep != Endpoint::PaymentPagePay;
    if !allowed {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    }
    let mut outer = wire::parse_form(query.as_bytes());
    if method == Method::POST && is_form {
        outer.extend(wire::parse_form(&body));
    }
    let (out, job) = match ep {
        Endpoint::PaymentPage => (lock(&inner.state).page(method.as_str(), &outer), None),
        Endpoint::PaymentPagePay => lock(&inner.state).pay(&outer),
        _ => (
            lock(&inner.state).serve_s2s(ep, method.as_str(), &outer),
            None,
        ),
    };
    if let Some(job) = job {
        // The notify goes out before the browser is redirected (either order happens, §1.7).
        let result = post_form(&inner.http, &job.url, &job.form).await;
        lock(&inner.state).notifies.push(SimNotify {
            pay_id: job.pay_id,
            url: job.url,
            fields: job.fields,
            result,
        });
    }
    match out.after {
        After::Reply => {}
        After::Delay(d) => tokio::time::sleep(d).await,
        After::Kill => cut.now(),
    }
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, [(header::CONTENT_TYPE, out.content_type)], out.body).into_response();
    if let Some(loc) = out.location
        && let Ok(v) = header::HeaderValue::from_str(&loc)
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

impl PaygateSim {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> PaygateSim {
        PaygateSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the Paygate simulator on a loopback port")
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<PaygateSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            state: Mutex::new(SimState {
                merchants: HashMap::new(),
                payments: Vec::new(),
                salt: wire::new_salt() ^ u64::from(local.port()),
                seq: 0,
                faults: Vec::new(),
                inquire_lag: 0,
                log: Vec::new(),
                notifies: Vec::new(),
                replies: HashMap::new(),
                sessions: HashMap::new(),
                plain_mid_in_notify: true,
            }),
            http,
            base_url,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = axum::serve(
            CutListener(listener),
            app.into_make_service_with_connect_info::<Cut>(),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "paygate simulator stopped");
            }
        });
        Ok(PaygateSim {
            inner,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoints are `{base_url}/capture.aspx`, `/credit.aspx`,
    /// `/reverse.aspx`, `/inquire.aspx`, `/paymentPage.aspx`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `{base_url}{endpoint.path()}`.
    pub fn url(&self, endpoint: Endpoint) -> String {
        format!("{}{}", self.inner.base_url, endpoint.path())
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.inner.state)
    }

    /// Registers a merchant with its Blowfish and HMAC passwords (raw bytes, reference §1.3).
    /// Panics on a Blowfish password outside 4..=56 bytes (the cipher's key range).
    pub fn add_merchant(
        &self,
        mid: &str,
        blowfish_key: impl AsRef<[u8]>,
        hmac_key: impl AsRef<[u8]>,
    ) {
        let blowfish = blowfish_key.as_ref().to_vec();
        assert!(
            (4..=56).contains(&blowfish.len()),
            "a Blowfish password has 4 to 56 bytes"
        );
        self.state().merchants.insert(
            mid.to_string(),
            Merchant {
                blowfish,
                hmac: hmac_key.as_ref().to_vec(),
            },
        );
    }

    /// Creates a payment as if the customer had paid; returns its PayID (32 hex characters).
    /// Panics for an unknown merchant.
    pub fn create_payment(
        &self,
        mid: &str,
        trans_id: &str,
        amount_minor: i64,
        currency: &str,
        kind: PaymentKind,
    ) -> String {
        self.create(NewPayment {
            merchant_id: mid.into(),
            trans_id: trans_id.into(),
            amount_minor,
            currency: currency.into(),
            kind,
            ref_nr: None,
        })
    }

    /// [`PaygateSim::create_payment`] with all options.
    pub fn create(&self, spec: NewPayment) -> String {
        let mut s = self.state();
        assert!(
            s.merchants.contains_key(&spec.merchant_id),
            "no merchant {}",
            spec.merchant_id
        );
        s.open_payment(
            &spec.merchant_id,
            &spec.trans_id,
            spec.ref_nr,
            None,
            None,
            spec.amount_minor,
            &spec.currency,
            spec.kind,
            None,
        )
    }

    /// Settles a `PENDING` step (`xid`, or the payment's latest pending step): success makes it
    /// `OK` (`AUTHORIZED` for a pending authorization) with code `00000000`, failure `FAILED`
    /// with [`DECLINED`]. `false` if there is no such step.
    pub fn settle(&self, pay_id: &str, xid: Option<&str>, success: bool) -> bool {
        let mut s = self.state();
        let Some(p) = s.payments.iter_mut().find(|p| p.pay_id == pay_id) else {
            return false;
        };
        let Some(step) = p
            .steps
            .iter_mut()
            .rev()
            .find(|t| t.pending() && xid.is_none_or(|x| x == t.xid))
        else {
            return false;
        };
        let auth = step.kind == StepKind::Auth;
        if success {
            step.status = if auth { "AUTHORIZED" } else { "OK" }.into();
            step.code = codes::OK.into();
            step.description = "success".into();
        } else {
            step.status = "FAILED".into();
            step.code = codes::DECLINED.into();
            step.description = "declined".into();
        }
        // The step is final now: a resubmission under its ReqId answers this result from here
        // on (developer.computop.com "ReqId": the original result once the first is final).
        let stored = step.req_id.clone().filter(|_| !auth).map(|req_id| {
            let mut fields = vec![
                f("mid", &p.mid),
                f("PayID", &p.pay_id),
                f("XID", &step.xid),
                f("TransID", &p.trans_id),
                f("Status", &step.status),
                f("Code", &step.code),
                f("Description", &step.description),
                f("Amount", step.amount.to_string()),
                f("Currency", &step.currency),
            ];
            if let Some(r) = &step.ref_nr {
                fields.push(f("RefNr", r));
            }
            let failed = !success;
            ((p.mid.clone(), req_id), Stored { fields, failed })
        });
        if auth {
            p.kind = if success {
                PaymentKind::Reserved
            } else {
                PaymentKind::Failed
            };
        }
        if let Some((key, reply)) = stored {
            s.replies.insert(key, reply);
        }
        true
    }

    /// Arms `fault` for the next `n` server-to-server requests it applies to.
    pub fn inject(&self, fault: Fault, n: usize) {
        self.arm(fault, n, None);
    }

    /// As [`PaygateSim::inject`], for requests to `endpoint` only.
    pub fn inject_on(&self, endpoint: Endpoint, fault: Fault, n: usize) {
        self.arm(fault, n, Some(endpoint));
    }

    fn arm(&self, fault: Fault, n: usize, endpoint: Option<Endpoint>) {
        if n > 0 {
            self.state().faults.push(Armed {
                fault,
                remaining: n,
                endpoint,
            });
        }
    }

    /// The next `n` inquires show the payment as it was before its latest step (a lagging read).
    pub fn set_inquire_lag(&self, n: usize) {
        self.state().inquire_lag = n;
    }

    /// Whether notifies carry a plain `MerchantID` next to `Len`/`Data` (default on: paybridge's
    /// notify route accepts both). `[U]` no public source shows Paygate sending one.
    pub fn with_plain_merchant_id(&self, on: bool) -> &Self {
        self.state().plain_mid_in_notify = on;
        self
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<SimCall> {
        self.state().log.clone()
    }

    /// Requests to `endpoint`.
    pub fn calls_to(&self, endpoint: Endpoint) -> Vec<SimCall> {
        self.state()
            .log
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .cloned()
            .collect()
    }

    pub fn clear_calls(&self) {
        self.state().log.clear();
    }

    /// Every notify sent so far.
    pub fn notifies(&self) -> Vec<SimNotify> {
        self.state().notifies.clone()
    }

    /// The payment with its amounts (minor units), steps and reversed flag.
    pub fn payment(&self, pay_id: &str) -> Option<SimPaymentView> {
        self.state().payment(pay_id).map(Payment::view)
    }

    /// All payments with this TransID, oldest first.
    pub fn payments_by_trans_id(&self, trans_id: &str) -> Vec<SimPaymentView> {
        self.state()
            .payments
            .iter()
            .filter(|p| p.trans_id == trans_id)
            .map(Payment::view)
            .collect()
    }

    /// The notify body (`Len`, `Data`, and `MerchantID` when configured) for the payment's
    /// current state or `status_override` (`Status`, `Code`); `None` for an unknown payment.
    pub fn notify_form(
        &self,
        pay_id: &str,
        status_override: Option<(&str, &str)>,
    ) -> Option<Fields> {
        self.state()
            .notify_job(pay_id, "", status_override)
            .map(|j| j.form)
    }

    /// POSTs the URLNotify for the payment's current state (its last step) or `status_override`
    /// (`Status`, `Code`) to `url` as `application/x-www-form-urlencoded; charset=iso-8859-1`
    /// (reference §1.7); returns the receiver's HTTP status.
    pub async fn notify(
        &self,
        pay_id: &str,
        url: &str,
        status_override: Option<(&str, &str)>,
    ) -> Result<u16, String> {
        let job = self
            .state()
            .notify_job(pay_id, url, status_override)
            .ok_or_else(|| format!("no payment {pay_id}"))?;
        let result = post_form(&self.inner.http, url, &job.form).await;
        self.state().notifies.push(SimNotify {
            pay_id: job.pay_id,
            url: job.url,
            fields: job.fields,
            result: result.clone(),
        });
        result
    }

    /// Sends the notify like Paygate: the first send, then after each of
    /// [`NOTIFY_RETRY_WAITS`] (divided by `time_scale`, e.g. 60 000 turns a minute into a
    /// millisecond) until a 2xx answer; returns every attempt's result. The same body each time
    /// `[INF]`.
    pub async fn notify_with_retries(
        &self,
        pay_id: &str,
        url: &str,
        time_scale: u32,
    ) -> Vec<Result<u16, String>> {
        let Some(job) = self.state().notify_job(pay_id, url, None) else {
            return vec![Err(format!("no payment {pay_id}"))];
        };
        let mut results = Vec::new();
        for attempt in 0..=NOTIFY_RETRY_WAITS.len() {
            if attempt > 0 {
                tokio::time::sleep(NOTIFY_RETRY_WAITS[attempt - 1] / time_scale.max(1)).await;
            }
            let result = post_form(&self.inner.http, url, &job.form).await;
            self.state().notifies.push(SimNotify {
                pay_id: job.pay_id.clone(),
                url: job.url.clone(),
                fields: job.fields.clone(),
                result: result.clone(),
            });
            let done = matches!(result, Ok(s) if (200..300).contains(&s));
            results.push(result);
            if done {
                break;
            }
        }
        results
    }

    /// A hosted-page link for `mid` (reference §3.1): `fields` (without MerchantID and MAC,
    /// which are added) are encrypted with the merchant's passwords, `Language` goes outside
    /// Data. For tests that drive the page without a connector.
    pub fn payment_page_url(
        &self,
        mid: &str,
        fields: &[(&str, &str)],
        language: Option<&str>,
    ) -> Option<String> {
        let m = self.state().merchants.get(mid).cloned()?;
        let mut inner: Fields = vec![f("MerchantID", mid)];
        inner.extend(fields.iter().map(|(k, v)| f(k, *v)));
        let v = |k: &str| get(&inner, k).unwrap_or_default().to_string();
        let msg =
            envelope::request_mac_message("", &v("TransID"), mid, &v("Amount"), &v("Currency"));
        inner.push(f("MAC", envelope::mac(&m.hmac, &msg)));
        let (data, len) = envelope::encrypt(&m.blowfish, &wire::join_kvp(&inner)).ok()?;
        let mut outer = vec![
            f("MerchantID", mid),
            f("Len", len.to_string()),
            f("Data", data),
        ];
        if let Some(l) = language {
            outer.push(f("Language", l));
        }
        Some(format!(
            "{}?{}",
            self.url(Endpoint::PaymentPage),
            wire::encode_form(&outer)
        ))
    }

    /// "Pays" a payment link over HTTP as a customer would: GETs it, posts the form's "Pay",
    /// and returns the PayID from the redirect to URLSuccess. A link whose ReqId already has a
    /// result redirects at once; that result's PayID is returned.
    pub async fn pay_link(&self, url: &str) -> Result<String, String> {
        self.follow_link(url, "pay").await
    }

    /// As [`PaygateSim::pay_link`] with "Cancel": returns the PayID of the failed payment.
    pub async fn cancel_link(&self, url: &str) -> Result<String, String> {
        self.follow_link(url, "cancel").await
    }

    async fn follow_link(&self, url: &str, action: &str) -> Result<String, String> {
        let http = &self.inner.http;
        let page = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let mid = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k.eq_ignore_ascii_case("MerchantID"))
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        let status = page.status().as_u16();
        if status == 302 {
            return self.pay_id_of_redirect(&mid, &page);
        }
        let html = page.text().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("payment page answered {status}: {html}"));
        }
        let token = hpp::token_of(&html).ok_or("no token on the payment page")?;
        let resp = http
            .post(self.url(Endpoint::PaymentPagePay))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(wire::encode_form(&[
                ("token", token.as_str()),
                ("action", action),
            ]))
            .send()
            .await
            .map_err(|e| format!("POST pay: {e}"))?;
        if resp.status().as_u16() != 302 {
            let s = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("pay answered {s}: {body}"));
        }
        self.pay_id_of_redirect(&mid, &resp)
    }

    fn pay_id_of_redirect(&self, mid: &str, resp: &reqwest::Response) -> Result<String, String> {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("redirect without Location")?;
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let outer = wire::parse_form(query.as_bytes());
        let fields = match (get(&outer, "Len"), get(&outer, "Data")) {
            (Some(len), Some(data)) => {
                let key = self
                    .state()
                    .merchants
                    .get(mid)
                    .map(|m| m.blowfish.clone())
                    .ok_or_else(|| format!("no merchant {mid}"))?;
                let len = len.parse::<usize>().map_err(|e| e.to_string())?;
                let plain = envelope::decrypt(&key, data, len).map_err(|e| e.to_string())?;
                wire::split_kvp(&plain)
            }
            _ => outer,
        };
        get(&fields, "PayID")
            .map(str::to_string)
            .ok_or_else(|| format!("no PayID in {location}"))
    }
}
