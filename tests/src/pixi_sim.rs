//! pixi* SOAP API simulator: an axum server that answers the pixi calls paybridge uses, in pixi's
//! public wire format, over an in-memory order/invoice/customer-account state.
//!
//! What it follows (sources in [`wire`] and [`calls`]): SOAP 1.1 (`text/xml`, `SOAPAction`),
//! HTTP Basic auth (wrong credentials: HTTP 401 with `WWW-Authenticate: Basic`, as IIS/http.sys in
//! front of SQL Server native XML web services answers), the operation element `<CallName>`,
//! replies `<CallNameResponse><CallNameResult>` with `SqlRowSet` diffgram rows and
//! `SqlResultCode`, per-call error conventions (`ReturnCode` OK/INFO/ERROR + `ErrorMessage`,
//! `SqlMessage` + non-zero `SqlResultCode`), SOAP faults for unknown calls, unknown or missing
//! parameters, parameters out of documented order where pixi-api-docs shows the order, and bad
//! values. Writes are **not idempotent**, like pixi's: a capture sent twice books twice.
//!
//! Test controls are plain methods: add/edit orders, ship lines into an invoice, cancel lines,
//! credit notes, close orders, customers' e-mail addresses ([`NewOrder::customer_email`],
//! [`PixiSim::set_customer_email`]; a customer has none unless set); readers for assertions;
//! fault injection for the next N requests (HTTP 503, SOAP fault, hang after applying a write
//! so the client times out); a request log.
//!
//! [`PixiSim::start_on`] binds a given address for the `paybridge-sim` binary.

pub mod calls;
pub mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{NaiveDateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Default credentials: user = the pixi database name (`pixiAPP` in the pixi docs' examples).
pub const DEFAULT_USER: &str = "pixiAPP";
pub const DEFAULT_PASSWORD: &str = "pixi-sim-password";

/// One order line.
#[derive(Debug, Clone, PartialEq)]
pub struct SimLine {
    pub key: i64,
    pub item: String,
    pub qty: Decimal,
    /// Gross unit price in order currency.
    pub price: Decimal,
    /// HAL, ANG, EIN, AUS, RET, MIN, STO, NLB.
    pub status: String,
    pub invoice_nr: Option<String>,
}

impl SimLine {
    /// Gross line total, rounded to cents.
    pub fn total(&self) -> Decimal {
        (self.qty * self.price).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
    }
}

/// One order (header + lines).
#[derive(Debug, Clone, PartialEq)]
pub struct SimOrder {
    pub order_nr: i64,
    pub order_nr_external: String,
    pub shop_id: String,
    pub cust_key: i64,
    /// Billing address id (`AddrRef`).
    pub addr_ref: i64,
    /// Payment code (`PaymentType`).
    pub payment_type: String,
    /// KK-ID.
    pub ccp_pay_id: Option<String>,
    pub last_auth_code: Option<String>,
    pub currency: String,
    /// OPEN, HOLD, CLOSED.
    pub status: String,
    pub shipping_lock: bool,
    /// Reasons given with pixiSetOrderShippingLock, in order.
    pub lock_reasons: Vec<String>,
    pub ship_cost: Decimal,
    /// Discount of the whole order (a voucher), a positive amount taken off the total
    /// (pixiGetOrderTotals `Discount`, "Discount of the order").
    pub discount: Decimal,
    pub lines: Vec<SimLine>,
    /// pixiPaySetAuthorizationStatus Success=1 was received.
    pub authorized: bool,
    pub fail_tries: u32,
    /// Messages of pixiPaySetAuthorizationStatus (the CCP log).
    pub ccp_log: Vec<String>,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

impl SimOrder {
    /// The lines pixiGetOrderTotals has a row for: those an invoice would carry, i.e. not
    /// cancelled (STO) or undeliverable (NLB) — an inference from the page's "totals equal to
    /// what the invoice would produce" (it does not say which lines count).
    pub fn invoiced_lines(&self) -> impl Iterator<Item = &SimLine> {
        self.lines
            .iter()
            .filter(|l| !matches!(l.status.as_str(), "STO" | "NLB"))
    }

    /// The order total pixiGetOrderTotals' rows add up to: the invoiced lines plus shipping
    /// minus the order's discount.
    pub fn total(&self) -> Decimal {
        self.invoiced_lines().map(SimLine::total).sum::<Decimal>() + self.ship_cost - self.discount
    }

    fn all_final(&self) -> bool {
        !self.lines.is_empty()
            && self
                .lines
                .iter()
                .all(|l| matches!(l.status.as_str(), "AUS" | "STO" | "NLB" | "RET" | "MIN"))
    }
}

/// An invoice or (negative total) credit note.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInvoice {
    pub key: i64,
    pub nr: String,
    pub order_nr: i64,
    /// Gross total in order currency; negative for credit notes.
    pub total: Decimal,
    pub paid_amount: Decimal,
    pub paid: bool,
    pub pay_id: Option<String>,
    /// `PayCode` of the last pixiPaySetInvoiceCapture.
    pub pay_code: Option<String>,
    pub fail_tries: u32,
    pub created: NaiveDateTime,
}

/// How a customer-account event came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingSource {
    /// pixiPaySetInvoiceCapture with Success=1.
    Capture,
    /// pixiCACreateManualBooking.
    Manual,
}

/// A customer-account event.
#[derive(Debug, Clone, PartialEq)]
pub struct SimBooking {
    pub cust_key: i64,
    pub event_id: String,
    pub amount: Decimal,
    /// The booking comment / capture message (pixiCAGetInvoiceMatch `Reference`).
    pub reference: String,
    pub invoice_nr: Option<String>,
    pub source: BookingSource,
    pub created: NaiveDateTime,
}

/// An order comment.
#[derive(Debug, Clone, PartialEq)]
pub struct SimComment {
    pub order_nr: i64,
    pub text: String,
    pub user: String,
    pub created: NaiveDateTime,
}

/// The bank fields of an address ("Kundenservice" fields Kontoinhaber/IBAN/BIC/Bank).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimBank {
    pub holder: Option<String>,
    pub iban: Option<String>,
    pub bic: Option<String>,
    pub bank_name: Option<String>,
}

/// One request as the simulator received it (after authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    pub call: String,
    pub soap_action: Option<String>,
    pub params: Vec<(String, String)>,
}

impl SimRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimFault {
    /// HTTP 503, nothing applied.
    Unavailable,
    /// A SOAP fault (HTTP 500) with this faultstring, nothing applied.
    SoapFault(String),
    /// The call is applied, then the reply is held back longer than any sane client timeout.
    HangAfterApply,
    /// HTTP 200 with a body that is not a SOAP reply (a proxy error page), nothing applied.
    BrokenReply,
}

/// The simulator state. Reachable through [`PixiSim`]'s methods.
#[derive(Debug)]
pub struct State {
    pub(crate) orders: BTreeMap<i64, SimOrder>,
    pub(crate) invoices: Vec<SimInvoice>,
    pub(crate) bookings: Vec<SimBooking>,
    pub(crate) comments: Vec<SimComment>,
    pub(crate) addresses: BTreeMap<i64, SimBank>,
    /// The customer's e-mail address (`CeMail`) per `CustKey`, as stored (not checked).
    pub(crate) customer_emails: BTreeMap<i64, String>,
    pub(crate) clock: NaiveDateTime,
    next_line: i64,
    next_invoice: i64,
    log: Vec<SimRequest>,
    faults: VecDeque<(Option<String>, SimFault)>,
    hang: Duration,
    user: String,
    password: String,
    auth_failures: u64,
    /// Calls this pixi database does not have (answered like any unknown procedure).
    pub(crate) uninstalled: Vec<String>,
    /// One-shot raw reply bodies by call (hostile-reply tests).
    canned: VecDeque<(String, String)>,
}

impl State {
    fn new(user: &str, password: &str) -> State {
        State {
            orders: BTreeMap::new(),
            invoices: Vec::new(),
            bookings: Vec::new(),
            comments: Vec::new(),
            addresses: BTreeMap::new(),
            customer_emails: BTreeMap::new(),
            clock: now_ms(),
            next_line: 1,
            next_invoice: 1,
            log: Vec::new(),
            faults: VecDeque::new(),
            hang: Duration::from_secs(30),
            user: user.into(),
            password: password.into(),
            auth_failures: 0,
            uninstalled: Vec::new(),
            canned: VecDeque::new(),
        }
    }

    /// Advances the change clock (strictly increasing, millisecond steps like SQL datetime).
    pub(crate) fn tick(&mut self) -> NaiveDateTime {
        let now = now_ms();
        self.clock = if now > self.clock {
            now
        } else {
            self.clock + chrono::Duration::milliseconds(1)
        };
        self.clock
    }

    /// Marks an order changed (pixi's UpdateDate).
    pub(crate) fn touch(&mut self, order_nr: i64) {
        let t = self.tick();
        if let Some(o) = self.orders.get_mut(&order_nr) {
            o.updated = t;
        }
    }

    pub(crate) fn order_of_cust(&self, cust: i64) -> Option<&SimOrder> {
        self.orders.values().find(|o| o.cust_key == cust)
    }

    fn close_if_final(&mut self, order_nr: i64) {
        if let Some(o) = self.orders.get_mut(&order_nr)
            && o.all_final()
        {
            o.status = "CLOSED".into();
        }
    }
}

fn now_ms() -> NaiveDateTime {
    let n = Utc::now().naive_utc();
    n - chrono::Duration::nanoseconds(i64::from(n.and_utc().timestamp_subsec_nanos() % 1_000_000))
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("test amount {s:?} is not a decimal"))
}

/// An order to add (test control). Defaults: shop `SHP`, shop order number `S<nr>`, customer
/// `1000 + nr`, EUR, HOLD with all lines `HAL`, no shipping cost, no KK-ID.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_nr: i64,
    pub order_nr_external: String,
    pub shop_id: String,
    pub cust_key: i64,
    pub payment_type: String,
    pub ccp_pay_id: Option<String>,
    pub currency: String,
    pub hold: bool,
    pub ship_cost: Decimal,
    pub discount: Decimal,
    /// (quantity, gross unit price)
    pub lines: Vec<(Decimal, Decimal)>,
    /// The customer's e-mail address (`CeMail`), set on the customer when the order is added;
    /// `None` leaves the customer's address as it is.
    pub customer_email: Option<String>,
}

impl NewOrder {
    pub fn new(order_nr: i64, payment_type: &str) -> NewOrder {
        NewOrder {
            order_nr,
            order_nr_external: format!("S{order_nr}"),
            shop_id: "SHP".into(),
            cust_key: 1000 + order_nr,
            payment_type: payment_type.into(),
            ccp_pay_id: None,
            currency: "EUR".into(),
            hold: true,
            ship_cost: Decimal::ZERO,
            discount: Decimal::ZERO,
            lines: Vec::new(),
            customer_email: None,
        }
    }
    /// A line of `qty` × gross unit `price` (decimal string).
    pub fn line(mut self, qty: i64, price: &str) -> NewOrder {
        self.lines.push((Decimal::from(qty), dec(price)));
        self
    }
    pub fn ship_cost(mut self, c: &str) -> NewOrder {
        self.ship_cost = dec(c);
        self
    }
    /// A discount on the whole order (decimal string, positive).
    pub fn discount(mut self, d: &str) -> NewOrder {
        self.discount = dec(d);
        self
    }
    pub fn pay_id(mut self, id: &str) -> NewOrder {
        self.ccp_pay_id = Some(id.into());
        self
    }
    pub fn currency(mut self, c: &str) -> NewOrder {
        self.currency = c.into();
        self
    }
    pub fn external(mut self, e: &str) -> NewOrder {
        self.order_nr_external = e.into();
        self
    }
    pub fn shop(mut self, s: &str) -> NewOrder {
        self.shop_id = s.into();
        self
    }
    pub fn customer(mut self, c: i64) -> NewOrder {
        self.cust_key = c;
        self
    }
    /// The customer's e-mail address, stored as given (malformed ones too).
    pub fn customer_email(mut self, e: &str) -> NewOrder {
        self.customer_email = Some(e.into());
        self
    }
    /// Imported as OPEN with lines `ANG` instead of HOLD/`HAL`.
    pub fn open(mut self) -> NewOrder {
        self.hold = false;
        self
    }
}

/// A running simulator. Dropping it stops the server.
pub struct PixiSim {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PixiSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PixiSim {
    /// Starts on an ephemeral loopback port with the default credentials.
    pub async fn start() -> PixiSim {
        match PixiSim::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(s) => s,
            Err(e) => panic!("pixi simulator cannot bind a loopback port: {e}"),
        }
    }

    /// Starts on `addr` with the default credentials.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<PixiSim> {
        PixiSim::start_with(addr, DEFAULT_USER, DEFAULT_PASSWORD).await
    }

    /// Starts on `addr` accepting Basic auth `user`/`password`.
    pub async fn start_with(
        addr: SocketAddr,
        user: &str,
        password: &str,
    ) -> std::io::Result<PixiSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(user, password)));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("pixi simulator stopped: {e}");
            }
        });
        Ok(PixiSim { state, addr, task })
    }

    /// The endpoint URL (old-style `…/soap/pixiAPP/`; any path is served).
    pub fn url(&self) -> String {
        format!("http://{}/soap/pixiAPP/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn user(&self) -> String {
        lock(&self.state).user.clone()
    }

    pub fn password(&self) -> String {
        lock(&self.state).password.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.state))
    }

    // ---------------------------------------------------------------- test controls

    /// Adds an order as the shop interface would import it; returns its order number.
    pub fn add_order(&self, n: NewOrder) -> i64 {
        self.with(|s| {
            let t = s.tick();
            let status = if n.hold { "HAL" } else { "ANG" };
            let mut lines = Vec::new();
            for (i, (qty, price)) in n.lines.iter().enumerate() {
                lines.push(SimLine {
                    key: s.next_line,
                    item: format!("ITEM{}", i + 1),
                    qty: *qty,
                    price: *price,
                    status: status.into(),
                    invoice_nr: None,
                });
                s.next_line += 1;
            }
            let addr_ref = 5000 + n.order_nr;
            s.addresses.insert(addr_ref, SimBank::default());
            if let Some(e) = n.customer_email {
                s.customer_emails.insert(n.cust_key, e);
            }
            s.orders.insert(
                n.order_nr,
                SimOrder {
                    order_nr: n.order_nr,
                    order_nr_external: n.order_nr_external,
                    shop_id: n.shop_id,
                    cust_key: n.cust_key,
                    addr_ref,
                    payment_type: n.payment_type,
                    ccp_pay_id: n.ccp_pay_id,
                    last_auth_code: None,
                    currency: n.currency,
                    status: if n.hold { "HOLD" } else { "OPEN" }.into(),
                    shipping_lock: false,
                    lock_reasons: Vec::new(),
                    ship_cost: n.ship_cost,
                    discount: n.discount,
                    lines,
                    authorized: false,
                    fail_tries: 0,
                    ccp_log: Vec::new(),
                    created: t,
                    updated: t,
                },
            );
            n.order_nr
        })
    }

    /// Edits an order in place and marks it changed.
    pub fn edit_order(&self, order_nr: i64, f: impl FnOnce(&mut SimOrder)) {
        self.with(|s| {
            if let Some(o) = s.orders.get_mut(&order_nr) {
                f(o);
            }
            s.touch(order_nr);
        })
    }

    /// Ships lines (all open ones when `line_keys` is empty) and creates their invoice; the first
    /// invoice of an order carries the shipping cost and the discount. Closes the order when nothing is left.
    /// Returns the invoice number.
    pub fn ship_lines(&self, order_nr: i64, line_keys: &[i64]) -> String {
        self.with(|s| {
            let nr = format!("RE{:06}", s.next_invoice);
            let key = s.next_invoice;
            s.next_invoice += 1;
            let first = !s
                .invoices
                .iter()
                .any(|i| i.order_nr == order_nr && i.total > Decimal::ZERO);
            let Some(o) = s.orders.get_mut(&order_nr) else {
                panic!("ship_lines: no order {order_nr}");
            };
            let mut total = Decimal::ZERO;
            for l in o.lines.iter_mut() {
                let wanted = if line_keys.is_empty() {
                    matches!(l.status.as_str(), "HAL" | "ANG" | "EIN")
                } else {
                    line_keys.contains(&l.key)
                };
                if wanted {
                    l.status = "AUS".into();
                    l.invoice_nr = Some(nr.clone());
                    total += l.total();
                }
            }
            if first {
                // The first invoice carries the order's shipping and its discount.
                total += o.ship_cost - o.discount;
            }
            if o.status == "HOLD" {
                o.status = "OPEN".into();
            }
            let t = s.tick();
            s.invoices.push(SimInvoice {
                key,
                nr: nr.clone(),
                order_nr,
                total,
                paid_amount: Decimal::ZERO,
                paid: false,
                pay_id: None,
                pay_code: None,
                fail_tries: 0,
                created: t,
            });
            s.close_if_final(order_nr);
            s.touch(order_nr);
            nr
        })
    }

    /// Cancels lines (`STO`); the order closes when every line is final.
    pub fn cancel_lines(&self, order_nr: i64, line_keys: &[i64]) {
        self.set_line_status(order_nr, line_keys, "STO");
    }

    /// Sets lines to any status (e.g. `NLB`, `RET`, `EIN`).
    pub fn set_line_status(&self, order_nr: i64, line_keys: &[i64], status: &str) {
        self.with(|s| {
            if let Some(o) = s.orders.get_mut(&order_nr) {
                for l in o.lines.iter_mut().filter(|l| line_keys.contains(&l.key)) {
                    l.status = status.into();
                }
            }
            s.close_if_final(order_nr);
            s.touch(order_nr);
        })
    }

    /// Creates a credit note (an invoice row with negative total) of `amount`; returns its number.
    pub fn create_credit_note(&self, order_nr: i64, amount: &str) -> String {
        self.with(|s| {
            let nr = format!("GU{:06}", s.next_invoice);
            let key = s.next_invoice;
            s.next_invoice += 1;
            let t = s.tick();
            s.invoices.push(SimInvoice {
                key,
                nr: nr.clone(),
                order_nr,
                total: -dec(amount),
                paid_amount: Decimal::ZERO,
                paid: false,
                pay_id: None,
                pay_code: None,
                fail_tries: 0,
                created: t,
            });
            s.touch(order_nr);
            nr
        })
    }

    /// Sets the order CLOSED.
    pub fn close_order(&self, order_nr: i64) {
        self.edit_order(order_nr, |o| o.status = "CLOSED".into());
    }

    /// Marks an invoice paid by someone else (e.g. by hand in pixi).
    pub fn set_invoice_paid(&self, invoice_nr: &str, paid: bool) {
        self.with(|s| {
            let mut order = None;
            if let Some(i) = s.invoices.iter_mut().find(|i| i.nr == invoice_nr) {
                i.paid = paid;
                i.paid_amount = if paid { i.total.abs() } else { Decimal::ZERO };
                order = Some(i.order_nr);
            }
            if let Some(o) = order {
                s.touch(o);
            }
        })
    }

    /// Sets (or, with `None`, removes) the e-mail address of customer `cust_key`, stored as given
    /// (pixi does not check it either).
    pub fn set_customer_email(&self, cust_key: i64, email: Option<&str>) {
        self.with(|s| match email {
            Some(e) => s.customer_emails.insert(cust_key, e.to_string()),
            None => s.customer_emails.remove(&cust_key),
        });
    }

    /// The next request of `call` gets `body` as its HTTP 200 reply, unchecked.
    pub fn respond_raw_once(&self, call: &str, body: String) {
        self.with(|s| s.canned.push_back((call.to_string(), body)));
    }

    /// From now on this database has no procedure `call` (a customer's pixi without it).
    pub fn uninstall(&self, call: &str) {
        self.with(|s| s.uninstalled.push(call.to_string()));
    }

    /// The next `n` requests fail with `fault`.
    pub fn fail_next(&self, fault: SimFault, n: usize) {
        self.with(|s| s.faults.extend(std::iter::repeat_n((None, fault), n)));
    }

    /// The next `n` requests of `call` fail with `fault`.
    pub fn fail_next_call(&self, call: &str, fault: SimFault, n: usize) {
        self.with(|s| {
            s.faults
                .extend(std::iter::repeat_n((Some(call.to_string()), fault), n))
        });
    }

    /// How long [`SimFault::HangAfterApply`] holds the reply back (default 30 s).
    pub fn set_hang(&self, d: Duration) {
        self.with(|s| s.hang = d);
    }

    // ---------------------------------------------------------------- readers

    pub fn order(&self, order_nr: i64) -> Option<SimOrder> {
        self.with(|s| s.orders.get(&order_nr).cloned())
    }

    pub fn invoice(&self, invoice_nr: &str) -> Option<SimInvoice> {
        self.with(|s| s.invoices.iter().find(|i| i.nr == invoice_nr).cloned())
    }

    /// Comment texts of an order, oldest first.
    pub fn comments(&self, order_nr: i64) -> Vec<String> {
        self.with(|s| {
            s.comments
                .iter()
                .filter(|c| c.order_nr == order_nr)
                .map(|c| c.text.clone())
                .collect()
        })
    }

    /// All customer-account events.
    pub fn bookings(&self) -> Vec<SimBooking> {
        self.with(|s| s.bookings.clone())
    }

    /// Customer-account events of the order's customer.
    pub fn bookings_for_order(&self, order_nr: i64) -> Vec<SimBooking> {
        self.with(|s| {
            let cust = s.orders.get(&order_nr).map(|o| o.cust_key);
            s.bookings
                .iter()
                .filter(|b| Some(b.cust_key) == cust)
                .cloned()
                .collect()
        })
    }

    /// The bank ("Kundenservice") fields of the order's billing address.
    pub fn transfer_fields(&self, order_nr: i64) -> Option<SimBank> {
        self.with(|s| {
            let a = s.orders.get(&order_nr)?.addr_ref;
            s.addresses.get(&a).cloned()
        })
    }

    /// Every authenticated request, in order.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.with(|s| s.log.clone())
    }

    /// Number of authenticated requests.
    pub fn request_count(&self) -> usize {
        self.with(|s| s.log.len())
    }

    /// Number of requests of one call.
    pub fn calls(&self, call: &str) -> usize {
        self.with(|s| s.log.iter().filter(|r| r.call == call).count())
    }

    pub fn clear_log(&self) {
        self.with(|s| s.log.clear());
    }

    /// Requests refused for their credentials.
    pub fn auth_failures(&self) -> u64 {
        self.with(|s| s.auth_failures)
    }
}

fn xml_response(status: u16, body: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn authorized(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{user}:{password}").as_bytes()
}

async fn handle(
    AxState(state): AxState<Arc<Mutex<State>>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    {
        let mut s = lock(&state);
        if !authorized(&headers, &s.user, &s.password) {
            s.auth_failures += 1;
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"pixi\"")],
                "401 - Unauthorized: Access is denied due to invalid credentials.",
            )
                .into_response();
        }
    }
    // SOAP 1.1 is text/xml (pixi-api-docs HTTP Example; the PHP SDK sends Content-type: text/xml).
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("text/xml") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "SOAP 1.1 requests must be text/xml",
        )
            .into_response();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return xml_response(
            500,
            wire::fault_xml("SOAP-ENV:Client", "request is not UTF-8", ""),
        );
    };
    let req = match wire::parse_request(text) {
        Ok(r) => r,
        Err(m) => return xml_response(500, wire::fault_xml("SOAP-ENV:Client", &m, "")),
    };
    let action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_string());
    let namespace = req
        .namespace
        .clone()
        .unwrap_or_else(|| "https://api.pixi.eu/soap/pixiAPP/".into());
    let (status, body, hang) = {
        let mut s = lock(&state);
        s.log.push(SimRequest {
            call: req.call.clone(),
            soap_action: action.clone(),
            params: req.params.clone(),
        });
        if let Some(i) = s.canned.iter().position(|(c, _)| *c == req.call) {
            let body = s.canned.remove(i).map(|(_, b)| b).unwrap_or_default();
            return xml_response(200, body);
        }
        let fault = s
            .faults
            .iter()
            .position(|(call, _)| call.as_deref().is_none_or(|c| c == req.call))
            .and_then(|i| s.faults.remove(i))
            .map(|(_, f)| f);
        match fault {
            Some(SimFault::Unavailable) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable")
                    .into_response();
            }
            Some(SimFault::BrokenReply) => {
                return xml_response(200, "<html><body>Gateway says hello</body></html>".into());
            }
            Some(SimFault::SoapFault(m)) => {
                let (st, b) = wire::render(&namespace, &req.call, &wire::Outcome::server_fault(m));
                (st, b, None)
            }
            other => {
                // SOAP 1.1 §6.1.1: the SOAPAction header must be present; pixi's is
                // "<namespace><call>" (drinks-it/pixi-api Client.php).
                let outcome = match &action {
                    None => wire::Outcome::client_fault("SOAPAction HTTP header missing"),
                    Some(a) if !a.is_empty() && !a.ends_with(&req.call) => {
                        wire::Outcome::client_fault(format!(
                            "SOAPAction {a:?} does not name {}",
                            req.call
                        ))
                    }
                    _ => calls::dispatch(&mut s, &req),
                };
                let (st, b) = wire::render(&namespace, &req.call, &outcome);
                let hang = (other == Some(SimFault::HangAfterApply)).then_some(s.hang);
                (st, b, hang)
            }
        }
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    xml_response(status, body)
}
