//! Unzer Payment API simulator.
//!
//! An axum server on a loopback port that answers like Unzer's `/v1` payment API as far as
//! paybridge uses it: `GET /v1/payments/{id|orderId}`, `GET` of every transaction url it lists,
//! `POST …/charges`, reversals (`…/authorize/{autId}/cancels`, payment-level
//! `…/authorize/cancels`), charge cancels (`…/charges/{chgId}/cancels`, payment-level
//! `…/charges/cancels`) and `…/shipments`. Wire facts (paths, field names, states, transaction
//! types/statuses, error objects, webhook body) follow `shared/reference/unzer.md` and the Unzer
//! SDKs named in [`model`]; where Unzer's behaviour is not documented the simulator is strict
//! and says so (`[INF]`).
//!
//! Authentication is HTTP Basic with the private key as user and an empty password; a missing
//! or unknown key gets 401 `API.710.000.002`, a public key 403 `API.710.000.005`, another
//! scheme 401 `API.710.000.007`. A payment of another merchant is 404 `API.310.100.003`.
//!
//! Test controls are plain methods: create payments of each kind, [`UnzerSim::receive_transfer`],
//! [`UnzerSim::settle`], [`UnzerSim::chargeback`], latency, [`Fault`]s for the next N requests,
//! a request log, and [`UnzerSim::send_webhook`]. [`UnzerSim::start_on`] serves on a given
//! address for the `paybridge-sim` binary.

mod model;
mod net;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use model::{Refs, Refusal, SimPayment, TxState, TxType, error_json};
use net::{ConnTag, SimListener};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use model::{BankData, fmt4};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fault for the next N requests it applies to. `ServerErrorBefore` and `TooManyRequests`
/// apply to any request; the others to `POST`s only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer HTTP 500 with an error object; nothing is processed.
    ServerErrorBefore,
    /// Answer HTTP 429; nothing is processed.
    TooManyRequests,
    /// Process the call, then answer HTTP 500.
    ServerErrorAfter,
    /// Process the call, then hold the reply this long (past the client's timeout).
    TimeoutAfter(Duration),
    /// Process the call, then cut the connection without a reply.
    DropAfter,
    /// The call's new transaction is created pending instead of successful.
    Pending,
    /// Process the call; the reply shows this amount (the stored transaction is unchanged).
    ReplyAmount(String),
    /// Process the call; the reply shows this currency.
    ReplyCurrency(String),
    /// A refused call is answered with HTTP 200 and the error object (Unzer does this too).
    ErrorsWithOk,
    /// Refuse the call with HTTP 400 and this Unzer error object; nothing is processed (e.g. an
    /// acquirer refusing a refund).
    Decline { code: String, message: String },
}

impl Fault {
    fn applies_to(&self, method: &Method) -> bool {
        match self {
            Fault::ServerErrorBefore | Fault::TooManyRequests => true,
            _ => method == Method::POST,
        }
    }
}

/// How the shop started the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// A successful authorization (card, PayPal, Apple Pay, Paylater).
    Authorize,
    /// An authorization still waiting for the customer (3-D Secure, redirect).
    AuthorizePending,
    /// A failed authorization.
    AuthorizeFailed,
    /// A successful direct charge (Sofort, EPS, iDEAL, …, or card/PayPal charged in the shop).
    Charge,
    /// A pending initial charge with transfer data (prepayment, legacy invoice types).
    ChargePending,
}

/// A payment to create.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub public_key: String,
    /// Type id infix: `crd`, `ppl`, `apl`, `sft`, `eps`, `idl`, `gro`, `ali`, `p24`, `ppy`,
    /// `ivc`, `ivs`, `piv`, `pit`, `pdd`, `dds` (php-sdk Constants/IdStrings.php).
    pub type_infix: String,
    pub currency: String,
    /// Decimal major units, e.g. `"100.00"`.
    pub amount: String,
    pub initial: Initial,
    pub order_id: Option<String>,
}

/// A transaction as tests inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTransaction {
    pub id: String,
    /// `yyyy-MM-dd HH:mm:ss`, German local time, as the simulator writes it.
    pub date: String,
    /// Unzer type: `authorize`, `charge`, `cancel-authorize`, `cancel-charge`, `shipment`, `chargeback`.
    pub kind: &'static str,
    /// `success`, `pending`, `error`.
    pub status: &'static str,
    pub amount: Decimal,
    /// `/v1/payments/{pid}/…/{id}`.
    pub path: String,
    pub payment_reference: Option<String>,
    pub invoice_id: Option<String>,
    pub order_id: Option<String>,
    pub reason_code: Option<String>,
}

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The key presented as Basic-auth user, if any.
    pub key: Option<String>,
    pub status: u16,
}

struct Armed {
    fault: Fault,
    remaining: usize,
    /// Only requests whose path contains this text.
    path: Option<String>,
}

struct SimState {
    /// private key → public key
    keys: HashMap<String, String>,
    payments: BTreeMap<String, SimPayment>,
    next_payment: u64,
    faults: Vec<Armed>,
    latency: Duration,
    log: Vec<LoggedRequest>,
    /// Origin put in front of transaction urls (normally the simulator's own).
    url_base: String,
    seq: u64,
}

struct Inner {
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// What to do after the state lock is released.
enum After {
    Reply,
    Delay(Duration),
    Kill,
}

struct Processed {
    status: u16,
    body: Value,
    after: After,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running simulator. Cheap to clone; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct UnzerSim {
    inner: Arc<Inner>,
    base_url: String,
    _server: Arc<ServerTask>,
}

/// Transfer data the simulator puts on the initial charge of its `n`-th payment
/// (prepayment/invoice types).
pub fn sim_bank_data(n: u64) -> BankData {
    BankData {
        holder: "Unzer Sim Merchant GmbH".into(),
        iban: "DE89370400440532013000".into(),
        bic: "COBADEFFXXX".into(),
        descriptor: format!("4711.0815.{n:04}"),
    }
}

/// Starts a simulator on `addr` (the `paybridge-sim` binary's entry); same as [`UnzerSim::start_on`].
pub async fn serve_on(addr: SocketAddr) -> std::io::Result<UnzerSim> {
    UnzerSim::start_on(addr).await
}

fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .ok()
}

fn parse_basic(header: Option<&str>) -> Result<Option<String>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(b64) = h.strip_prefix("Basic ") else {
        return Err(());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ())?;
    let text = String::from_utf8(raw).map_err(|_| ())?;
    Ok(Some(text.split(':').next().unwrap_or_default().to_string()))
}

impl SimState {
    fn error(&mut self, status: u16, path: &str, code: &str, message: &str) -> Processed {
        self.seq += 1;
        let url = format!("{}{path}", self.url_base);
        Processed {
            status,
            body: error_json("s", self.seq, &url, code, message),
            after: After::Reply,
        }
    }

    fn refusal(&mut self, path: &str, r: Refusal) -> Processed {
        self.error(r.status, path, r.code, &r.message)
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let i = self.faults.iter().position(|a| {
            a.fault.applies_to(method) && a.path.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let armed = &mut self.faults[i];
        let fault = armed.fault.clone();
        armed.remaining -= 1;
        if armed.remaining == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }

    fn process(
        &mut self,
        method: &Method,
        path: &str,
        auth: Option<&str>,
        body: &[u8],
    ) -> Processed {
        let key = parse_basic(auth);
        let fault = self.take_fault(method, path);
        let mut out = self.route(method, path, key.clone(), body, fault.as_ref());
        match &fault {
            Some(Fault::ServerErrorAfter) => {
                let e = self.error(
                    500,
                    path,
                    "API.000.000.999",
                    "internal error after processing",
                );
                out.status = e.status;
                out.body = e.body;
            }
            Some(Fault::TimeoutAfter(d)) => out.after = After::Delay(*d),
            Some(Fault::DropAfter) => out.after = After::Kill,
            Some(Fault::ReplyAmount(a)) if out.status < 300 => {
                if let Some(o) = out.body.as_object_mut() {
                    o.insert("amount".into(), json!(a));
                }
            }
            Some(Fault::ReplyCurrency(c)) if out.status < 300 => {
                if let Some(o) = out.body.as_object_mut() {
                    o.insert("currency".into(), json!(c));
                }
            }
            Some(Fault::ErrorsWithOk) if out.status >= 400 => out.status = 200,
            _ => {}
        }
        self.log.push(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            key: key.ok().flatten(),
            status: out.status,
        });
        out
    }

    fn route(
        &mut self,
        method: &Method,
        path: &str,
        key: Result<Option<String>, ()>,
        body: &[u8],
        fault: Option<&Fault>,
    ) -> Processed {
        match fault {
            Some(Fault::ServerErrorBefore) => {
                return self.error(
                    500,
                    path,
                    "API.000.000.999",
                    "internal error, nothing processed",
                );
            }
            Some(Fault::TooManyRequests) => {
                return self.error(429, path, "API.000.000.999", "too many requests");
            }
            Some(Fault::Decline { code, message }) => return self.error(400, path, code, message),
            _ => {}
        }
        // Basic auth with the private key (php-sdk HttpService::composeHttpHeaders); key errors API.710.* (php-sdk ApiResponseCodes).
        let public = match key {
            Err(()) => {
                return self.error(401, path, "API.710.000.007", "wrong authentication method");
            }
            Ok(None) => return self.error(401, path, "API.710.000.002", "no key given"),
            Ok(Some(k)) => match self.keys.get(&k) {
                Some(p) => p.clone(),
                None if self.keys.values().any(|p| p == &k) => {
                    // a public key on a private resource is 403 (docs "Error handling")
                    return self.error(
                        403,
                        path,
                        "API.710.000.005",
                        "insufficient permission: a public key cannot access this resource",
                    );
                }
                None => return self.error(401, path, "API.710.000.002", "invalid key"),
            },
        };
        let trimmed = path.trim_end_matches('/');
        let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() < 3 || segs[0] != "v1" || segs[1] != "payments" {
            return self.error(404, path, "API.000.000.999", "resource not found");
        }
        let Some(pid) = self.lookup(segs[2], &public) else {
            // payment not found, also for another merchant's payment (php-sdk ApiResponseCodes::API_ERROR_PAYMENT_NOT_FOUND)
            return self.error(404, path, "API.310.100.003", "payment not found");
        };
        let url_base = self.url_base.clone();
        if method == Method::GET {
            let Some(p) = self.payments.get(&pid) else {
                return self.error(404, path, "API.310.100.003", "payment not found");
            };
            if segs.len() == 3 {
                return Processed {
                    status: 200,
                    body: p.to_json(&url_base),
                    after: After::Reply,
                };
            }
            let wanted = format!("/v1/payments/{pid}/{}", segs[3..].join("/"));
            return match p.tx_by_path(&wanted) {
                Some(t) => Processed {
                    status: 200,
                    body: p.tx_json(t),
                    after: After::Reply,
                },
                None => self.error(404, path, "API.000.000.999", "transaction not found"),
            };
        }
        if method != Method::POST {
            return self.error(405, path, "API.000.000.999", "method not allowed");
        }
        let req: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => {
                    return self.error(
                        400,
                        path,
                        "API.500.300.999",
                        "request data is invalid: not JSON",
                    );
                }
            }
        };
        let amount = match &req.get("amount") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => decimal(s),
            Some(Value::Number(n)) => decimal(&n.to_string()),
            Some(_) => {
                return self.error(
                    400,
                    path,
                    "API.500.300.999",
                    "request data is invalid: amount",
                );
            }
        };
        if req.get("amount").is_some_and(|v| !v.is_null()) {
            match amount {
                // more than 4 decimals are refused (unzerdev/shopware6#9)
                Some(a) if a.normalize().scale() > 4 => {
                    return self.error(
                        400,
                        path,
                        "API.500.300.999",
                        "request data is invalid: the amount has more than 4 decimals",
                    );
                }
                Some(a) if a <= Decimal::ZERO => {
                    return self.error(
                        400,
                        path,
                        "API.500.300.999",
                        "request data is invalid: amount must be positive",
                    );
                }
                None => {
                    return self.error(
                        400,
                        path,
                        "API.500.300.999",
                        "request data is invalid: amount is not a number",
                    );
                }
                Some(_) => {}
            }
        }
        let text = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
        let refs = Refs {
            order_id: text("orderId"),
            invoice_id: text("invoiceId"),
            payment_reference: text("paymentReference"),
            reason_code: text("reasonCode"),
        };
        let status = if fault == Some(&Fault::Pending) {
            TxState::Pending
        } else {
            TxState::Success
        };
        let Some(p) = self.payments.get_mut(&pid) else {
            return self.error(404, path, "API.310.100.003", "payment not found");
        };
        let rest: Vec<&str> = segs[3..].to_vec();
        let result = match rest.as_slice() {
            ["charges"] => p.charge(amount, status, refs),
            ["authorize", "cancels"] => p.cancel_authorization(None, amount, status, refs),
            ["authorize", aut, "cancels"] => {
                p.cancel_authorization(Some(aut), amount, status, refs)
            }
            ["charges", "cancels"] => p.cancel_charge(None, amount, status, refs),
            ["charges", chg, "cancels"] => p.cancel_charge(Some(chg), amount, status, refs),
            ["shipments"] => p.ship(refs),
            _ => return self.error(404, path, "API.000.000.999", "resource not found"),
        };
        match result {
            Ok(id) => {
                let body = p
                    .txs
                    .iter()
                    .rev()
                    .find(|t| t.id == id)
                    .map(|t| p.tx_json(t))
                    .unwrap_or(Value::Null);
                Processed {
                    status: 200,
                    body,
                    after: After::Reply,
                }
            }
            Err(r) => self.refusal(path, r),
        }
    }

    /// A payment by id or by orderId (`GET /v1/payments/{orderId}`, reference §3 #1), of this merchant only.
    fn lookup(&self, id_or_order: &str, public: &str) -> Option<String> {
        if let Some(p) = self.payments.get(id_or_order) {
            return (p.public_key == public).then(|| p.id.clone());
        }
        self.payments
            .values()
            .find(|p| p.public_key == public && p.order_id.as_deref() == Some(id_or_order))
            .map(|p| p.id.clone())
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let latency = lock(&inner.state).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let out = lock(&inner.state).process(&method, &path, auth.as_deref(), &body);
    match out.after {
        After::Reply => {}
        After::Delay(d) => tokio::time::sleep(d).await,
        After::Kill => conn.kill(),
    }
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(out.body)).into_response()
}

impl UnzerSim {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> UnzerSim {
        UnzerSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the Unzer simulator on a loopback port")
    }

    /// Starts on `addr` (for the `paybridge-sim` binary).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<UnzerSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let inner = Arc::new(Inner {
            state: Mutex::new(SimState {
                keys: HashMap::new(),
                payments: BTreeMap::new(),
                next_payment: 0,
                faults: Vec::new(),
                latency: Duration::ZERO,
                log: Vec::new(),
                url_base: base_url.clone(),
                seq: 0,
            }),
            http: reqwest::Client::new(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = axum::serve(
            SimListener::new(listener),
            app.into_make_service_with_connect_info::<ConnTag>(),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "unzer simulator stopped");
            }
        });
        Ok(UnzerSim {
            inner,
            base_url,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// `http://127.0.0.1:PORT`: the `api_host` to configure.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.inner.state)
    }

    /// Registers a merchant key pair.
    pub fn add_keypair(&self, public_key: &str, private_key: &str) {
        self.state()
            .keys
            .insert(private_key.to_string(), public_key.to_string());
    }

    /// Creates a payment as the shop would have; returns its id (`s-pay-N`).
    pub fn create(&self, spec: NewPayment) -> String {
        let amount = decimal(&spec.amount)
            .unwrap_or_else(|| panic!("NewPayment amount {:?} is not a decimal", spec.amount));
        let mut s = self.state();
        s.next_payment += 1;
        let n = s.next_payment;
        let env = if spec.public_key.starts_with("p-") {
            "p"
        } else {
            "s"
        };
        let id = format!("{env}-pay-{n}");
        let type_id = format!(
            "{env}-{}-{:012x}",
            spec.type_infix,
            n.wrapping_mul(0x5_DEEC_E66D) & 0xffff_ffff_ffff
        );
        let mut p = SimPayment::new(
            id.clone(),
            spec.public_key,
            type_id,
            spec.currency,
            spec.order_id,
        );
        match spec.initial {
            Initial::Authorize => p.start(TxType::Authorize, TxState::Success, amount, None),
            Initial::AuthorizePending => p.start(TxType::Authorize, TxState::Pending, amount, None),
            Initial::AuthorizeFailed => p.start(TxType::Authorize, TxState::Error, amount, None),
            Initial::Charge => p.start(TxType::Charge, TxState::Success, amount, None),
            Initial::ChargePending => p.start(
                TxType::Charge,
                TxState::Pending,
                amount,
                Some(sim_bank_data(n)),
            ),
        };
        s.payments.insert(id.clone(), p);
        id
    }

    fn quick(
        &self,
        public_key: &str,
        infix: &str,
        currency: &str,
        amount: &str,
        initial: Initial,
    ) -> String {
        self.create(NewPayment {
            public_key: public_key.into(),
            type_infix: infix.into(),
            currency: currency.into(),
            amount: amount.into(),
            initial,
            order_id: None,
        })
    }

    /// A successfully authorized payment (`crd`, `ppl`, `apl`, `piv`, `pit`, `pdd`, …).
    pub fn authorized(
        &self,
        public_key: &str,
        infix: &str,
        currency: &str,
        amount: &str,
    ) -> String {
        self.quick(public_key, infix, currency, amount, Initial::Authorize)
    }

    /// A payment charged in the shop (`sft`, `eps`, `idl`, `gro`, `ali`, `p24`, or `crd`/`ppl` charged directly).
    pub fn charged(&self, public_key: &str, infix: &str, currency: &str, amount: &str) -> String {
        self.quick(public_key, infix, currency, amount, Initial::Charge)
    }

    /// A prepayment with its pending initial charge and transfer data.
    pub fn prepayment(&self, public_key: &str, currency: &str, amount: &str) -> String {
        self.quick(public_key, "ppy", currency, amount, Initial::ChargePending)
    }

    /// A legacy invoice-secured payment (`ivs`): pending initial charge, takes shipments.
    pub fn invoice_secured(&self, public_key: &str, currency: &str, amount: &str) -> String {
        self.quick(public_key, "ivs", currency, amount, Initial::ChargePending)
    }

    /// A customer's transfer arrives for a prepayment/invoice: a successful receipt charge. Returns its id.
    pub fn receive_transfer(&self, payment_id: &str, amount: &str) -> String {
        let amount = decimal(amount)
            .unwrap_or_else(|| panic!("transfer amount {amount:?} is not a decimal"));
        let mut s = self.state();
        let p = s
            .payments
            .get_mut(payment_id)
            .unwrap_or_else(|| panic!("no payment {payment_id}"));
        p.receipt(amount)
    }

    /// Turns a pending transaction into success (or error).
    pub fn settle(&self, payment_id: &str, tx_id: &str, success: bool) {
        let mut s = self.state();
        if let Some(t) = s.payments.get_mut(payment_id).and_then(|p| {
            p.txs
                .iter_mut()
                .find(|t| t.id == tx_id && t.status == TxState::Pending)
        }) {
            t.status = if success {
                TxState::Success
            } else {
                TxState::Error
            };
        }
    }

    /// A chargeback on the last successful charge. Returns its id.
    pub fn chargeback(&self, payment_id: &str, amount: &str) -> Option<String> {
        let amount = decimal(amount)?;
        self.state()
            .payments
            .get_mut(payment_id)?
            .chargeback(amount)
    }

    /// Delay before every reply.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Arms `fault` for the next `n` requests it applies to (see [`Fault`]).
    pub fn inject(&self, fault: Fault, n: usize) {
        self.arm(fault, n, None);
    }

    /// As [`UnzerSim::inject`], for requests whose path contains `path_contains` only (e.g.
    /// `/charges/s-chg-2/cancels` to hit the second part of a spread refund).
    pub fn inject_on(&self, path_contains: &str, fault: Fault, n: usize) {
        self.arm(fault, n, Some(path_contains.to_string()));
    }

    fn arm(&self, fault: Fault, n: usize, path: Option<String>) {
        if n > 0 {
            self.state().faults.push(Armed {
                fault,
                remaining: n,
                path,
            });
        }
    }

    /// Origin put in front of transaction urls in replies (`None`: the simulator's own). Lets a
    /// test make the simulator list urls on a foreign host.
    pub fn set_url_base(&self, origin: Option<&str>) {
        let own = self.base_url.clone();
        self.state().url_base = origin.map_or(own, |o| o.trim_end_matches('/').to_string());
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    /// Requests with this method whose path starts with `path_prefix`.
    pub fn calls(&self, method: &str, path_prefix: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// The payment as `GET /v1/payments/{id}` shows it.
    pub fn payment_json(&self, payment_id: &str) -> Option<Value> {
        let s = self.state();
        s.payments.get(payment_id).map(|p| p.to_json(&s.url_base))
    }

    /// `state.id` of a payment.
    pub fn state_id(&self, payment_id: &str) -> Option<u8> {
        self.state().payments.get(payment_id).map(|p| p.state().0)
    }

    /// Backdates every transaction of the payment to `at` (an authorization made days ago:
    /// authorization lifetime tests). `false` for an unknown payment.
    pub fn set_dates(&self, payment_id: &str, at: chrono::DateTime<chrono::Utc>) -> bool {
        let mut s = self.state();
        let Some(p) = s.payments.get_mut(payment_id) else {
            return false;
        };
        for t in &mut p.txs {
            t.date = model::wire_date(at);
        }
        true
    }

    /// The payment's transactions with their reference fields.
    pub fn transactions(&self, payment_id: &str) -> Vec<SimTransaction> {
        let s = self.state();
        let Some(p) = s.payments.get(payment_id) else {
            return Vec::new();
        };
        p.txs
            .iter()
            .map(|t| SimTransaction {
                id: t.id.clone(),
                kind: t.kind.wire(),
                status: t.status.wire(),
                amount: t.amount,
                path: t.path.clone(),
                payment_reference: t.refs.payment_reference.clone(),
                invoice_id: t.refs.invoice_id.clone(),
                order_id: t.refs.order_id.clone(),
                reason_code: t.refs.reason_code.clone(),
                date: t.date.clone(),
            })
            .collect()
    }

    /// The webhook body Unzer POSTs (docs "Notifications"): `{event, publicKey, retrieveUrl, paymentId}`.
    pub fn webhook_body(&self, event: &str, payment_id: &str) -> Option<Value> {
        let s = self.state();
        let p = s.payments.get(payment_id)?;
        Some(json!({
            "event": event,
            "publicKey": p.public_key,
            "retrieveUrl": format!("{}/v1/payments/{}", s.url_base, p.id),
            "paymentId": p.id,
        }))
    }

    /// POSTs the webhook for `event` on `payment_id` to `url`; returns the receiver's HTTP status.
    pub async fn send_webhook(
        &self,
        url: &str,
        event: &str,
        payment_id: &str,
    ) -> Result<u16, String> {
        let body = self
            .webhook_body(event, payment_id)
            .ok_or_else(|| format!("no payment {payment_id}"))?;
        let resp = self
            .inner
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("webhook to {url}: {e}"))?;
        Ok(resp.status().as_u16())
    }
}
