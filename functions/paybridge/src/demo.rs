//! `paybridge demo` and the scenario harness the end-to-end tests and the lifecycle bench share.
//!
//! [`Harness::start`] puts the whole product on loopback: the pixi SOAP simulator and the Unzer
//! API simulator (`paybridge-testkit`), a configuration file in a temporary directory (one
//! `[[erp]]` of kind `pixi` pointing at the pixi simulator, one `[[method]]` per [`Method`] with
//! `psp = "unzer"` and `api_host` = the Unzer simulator, each with its own key pair and booking
//! event codes), the [`App`] built exactly as `paybridge serve` builds it
//! ([`startup::prepare`] + [`serve::build_app`] on a SQLite file), and the real HTTP router on a
//! loopback socket ([`serve::spawn_http`]) so that webhooks arrive over HTTP.
//!
//! Time is driven, not waited for: [`Harness::settle`] calls [`App::poll_cycle`] and
//! [`App::work_once`] until nothing is left to do, and when only delayed work (retries after a
//! backoff) remains it moves a simulated clock forward instead of sleeping. The simulated clock
//! never runs behind the real one, so jobs enqueued by the HTTP listener (which stamps them with
//! the real time) are always visible to the next round. There is one clock for every order of a
//! run: a scenario that needs time to pass for itself dates its payment back at the Unzer
//! simulator instead ([`Start::AuthorizedHoursAgo`]); the one step that moves the clock for all
//! ([`Step::ClockAhead`], a day in the catalogue's last phase) is shared, and every expected
//! end state holds after it.
//!
//! [`catalogue`] is the scripted set of orders, one per flow of behaviour.md §3.1–§3.5 and §3.9
//! and mode or payment-method family, plus the seed-000 details of issue 12 (transfer data for
//! the invoice methods, authorization lifetime, payments pending too long, hands-off orders,
//! invoices captured outside paybridge, discount and freight in pixi's order totals): each is an
//! order created in pixi, a payment created at Unzer with that method's key pair, steps in
//! phases (ship, cancel, credit note, close, transfer received plus the `payment.completed`
//! webhook, an operator's hands-off, …), and the [`EndState`] expected in pixi and at Unzer and
//! paybridge's problem codes (errors and hints), to the cent. [`run_demo`] runs all of them and
//! prints one line per order.

use crate::connectors::LoggedPsp;
use crate::serve::{self, HttpHandle};
use crate::startup::{self, StartError};
use chrono::{DateTime, Utc};
use paybridge_core::app::{App, AppError};
use paybridge_core::config::PspKind;
use paybridge_core::config::SecretRef;
use paybridge_core::engine::{Flag, Severity};
use paybridge_core::ledger::{OrderKey, PspCall};
use paybridge_core::money::Money;
use paybridge_core::notify::email::EmailNotifier;
use paybridge_core::notify::recording::RecordingNotifier;
use paybridge_core::notify::{Notifier, NotifyError, PaymentLinkMail, Problem as NotifyProblem};
use paybridge_core::psp::paygate::{PaygatePsp, PaygateTimeouts};
use paybridge_core::psp::unzer::{UnzerPsp, UnzerTimeouts};
use paybridge_core::psp::{PspOutcome, PspRouter};
use paybridge_core::queue::QueueError;
use paybridge_core::store::repo::Repo;
use paybridge_core::store::{Store, StoreError};
use paybridge_testkit::paygate_sim::{PaygateSim, PaymentKind, SimPaymentView};
use paybridge_testkit::pixi_sim::{NewOrder, PixiSim};
use paybridge_testkit::unzer_sim::{Initial, NewPayment, UnzerSim, sim_bank_data};
use rust_decimal::Decimal;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// The tenant of the demo configuration.
pub const TENANT: &str = "paybridge-demo";
/// The id of the pixi connection in the demo configuration.
pub const CONNECTION: &str = "pixi";
/// The pixi shop id (= mandant) the simulator gives new orders.
pub const MANDANT: &str = "SHP";

/// Jobs received per worker round while settling.
const BATCH: usize = 50;
/// Poll/work rounds before [`Harness::settle`] gives up.
const MAX_ROUNDS: usize = 80;
/// How far the simulated clock jumps when only delayed work is left.
const CLOCK_STEP_SECS: i64 = 300;
/// Jobs per settle round before it is considered a runaway.
const MAX_JOBS_PER_ROUND: usize = 100_000;

/// Why the demo (or a scenario) could not run. A scenario that runs but ends differently than
/// expected is not an error: it is a `FAIL` line.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start a simulator on loopback: {0}")]
    Simulator(std::io::Error),
    #[error("cannot prepare the demo directory: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the Unzer connector: {0}")]
    Unzer(String),
    #[error("the HTTP listener failed: {0}")]
    Http(String),
    #[error("{0}")]
    Scenario(String),
}

// ------------------------------------------------------------------------------- methods

/// The payment-method configs of the demo: one per (method family, mode), each with its own
/// pixi payment code, Unzer key pair and booking event codes (pixi: at most 3 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Card, standard mode: the whole amount is captured before the release.
    CardStandard,
    /// Card, expert mode: captured per invoice.
    CardExpert,
    /// Prepayment (bank transfer in advance).
    Prepayment,
    /// Paylater invoice. Its config says `mode = "standard"` on purpose: the mode has no
    /// effect on invoice-type methods.
    PaylaterInvoice,
    /// Paylater direct debit.
    PaylaterDebit,
    /// Sofort: charged in the shop.
    Sofort,
    /// Invoice secured (deprecated Unzer type with a shipment call).
    InvoiceSecured,
    /// Unzer Invoice (deprecated, unsecured `ivc`: no shipment call).
    Invoice,
    /// Computop Paygate card, expert mode (reserved at checkout, captured per invoice).
    PaygateCardExpert,
    /// Computop Paygate card, standard mode (captured in full before the release).
    PaygateCardStandard,
    /// Computop Paygate Klarna (reserved, captured per invoice).
    PaygateKlarna,
    /// Computop Paygate PayPal (booked at once in the shop: only refunds remain).
    PaygatePaypal,
    /// Computop Paygate payment link (behaviour.md §3.6: the order comes without a payment;
    /// paybridge e-mails the customer a link to Paygate's payment page; card, captured per
    /// invoice). Configured only with [`Options::payment_links`] (it needs `[smtp]`).
    PaygateLink,
}

/// The demo's Paygate merchant (one MerchantID for every Paygate method, as a real account has).
pub const PAYGATE_MERCHANT: &str = "paybridgeDemo";
/// The demo merchant's Blowfish password (the simulator's; not a real one).
pub const PAYGATE_BLOWFISH: &str = "demoBlowfish01";
/// The demo merchant's HMAC password (the simulator's; not a real one).
pub const PAYGATE_HMAC: &str = "demo-hmac-password-0001";

impl Method {
    pub const ALL: [Method; 12] = [
        Method::CardStandard,
        Method::CardExpert,
        Method::Prepayment,
        Method::PaylaterInvoice,
        Method::PaylaterDebit,
        Method::Sofort,
        Method::InvoiceSecured,
        Method::Invoice,
        Method::PaygateCardExpert,
        Method::PaygateCardStandard,
        Method::PaygateKlarna,
        Method::PaygatePaypal,
    ];

    /// Whether the config's PSP is Computop Paygate (else Unzer).
    pub fn is_paygate(self) -> bool {
        matches!(
            self,
            Method::PaygateCardExpert
                | Method::PaygateCardStandard
                | Method::PaygateKlarna
                | Method::PaygatePaypal
                | Method::PaygateLink
        )
    }

    /// The Paygate `psp_method` of a Paygate config.
    fn paygate_method(self) -> &'static str {
        match self {
            Method::PaygateKlarna => "klarna",
            Method::PaygatePaypal => "paypal",
            _ => "card",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Method::CardStandard => "card-std",
            Method::CardExpert => "card-exp",
            Method::Prepayment => "prepay",
            Method::PaylaterInvoice => "pl-inv",
            Method::PaylaterDebit => "pl-dd",
            Method::Sofort => "sofort",
            Method::InvoiceSecured => "inv-sec",
            Method::Invoice => "inv",
            Method::PaygateCardExpert => "pg-card-exp",
            Method::PaygateCardStandard => "pg-card-std",
            Method::PaygateKlarna => "pg-klarna",
            Method::PaygatePaypal => "pg-paypal",
            Method::PaygateLink => "pg-link",
        }
    }

    /// The pixi payment code (`erp_method`): a single character, as pixi's `PaymentType` is
    /// (`char` / `varchar(1)` on the pixi call pages; see the pixi connector).
    pub fn code(self) -> &'static str {
        match self {
            Method::CardStandard => "C",
            Method::CardExpert => "K",
            Method::Prepayment => "V",
            Method::PaylaterInvoice => "R",
            Method::PaylaterDebit => "L",
            Method::Sofort => "S",
            Method::InvoiceSecured => "I",
            Method::Invoice => "N",
            Method::PaygateCardExpert => "G",
            Method::PaygateCardStandard => "H",
            Method::PaygateKlarna => "J",
            Method::PaygatePaypal => "P",
            Method::PaygateLink => "Y",
        }
    }

    /// What the demo prints in its mode column.
    pub fn label(self) -> &'static str {
        match self {
            Method::CardStandard => "card standard",
            Method::CardExpert => "card expert",
            Method::Prepayment => "prepayment",
            Method::PaylaterInvoice => "paylater invoice",
            Method::PaylaterDebit => "paylater debit",
            Method::Sofort => "sofort",
            Method::InvoiceSecured => "invoice secured",
            Method::Invoice => "invoice",
            Method::PaygateCardExpert => "paygate card exp",
            Method::PaygateCardStandard => "paygate card std",
            Method::PaygateKlarna => "paygate klarna",
            Method::PaygatePaypal => "paygate paypal",
            Method::PaygateLink => "paygate link",
        }
    }

    /// The configured `mode`.
    pub fn mode(self) -> &'static str {
        match self {
            Method::CardStandard | Method::PaylaterInvoice | Method::PaygateCardStandard => {
                "standard"
            }
            Method::PaygateLink => "link",
            _ => "expert",
        }
    }

    /// Booking event code for invoices (payment received).
    pub fn invoice_event(self) -> &'static str {
        match self {
            Method::CardStandard | Method::CardExpert => "ZE",
            Method::PaygateCardExpert | Method::PaygateCardStandard | Method::PaygateLink => "ZE",
            Method::PaygateKlarna => "KLA",
            Method::PaygatePaypal => "PPL",
            Method::Prepayment => "VK",
            Method::PaylaterInvoice => "PLI",
            Method::PaylaterDebit => "PLD",
            Method::Sofort => "SOF",
            Method::InvoiceSecured => "RGS",
            Method::Invoice => "IV",
        }
    }

    /// Booking event code for refunds of credit notes.
    pub fn return_event(self) -> &'static str {
        match self {
            Method::CardStandard | Method::CardExpert => "RE",
            Method::PaygateCardExpert | Method::PaygateCardStandard | Method::PaygateLink => "RE",
            Method::PaygateKlarna => "KLR",
            Method::PaygatePaypal => "PPR",
            Method::Prepayment => "VKR",
            Method::PaylaterInvoice => "PLR",
            Method::PaylaterDebit => "PDR",
            Method::Sofort => "SOR",
            Method::InvoiceSecured => "RGR",
            Method::Invoice => "IVR",
        }
    }

    /// Rounding tolerance in cents.
    pub fn tolerance(self) -> u32 {
        match self {
            Method::CardStandard | Method::CardExpert => 2,
            Method::PaygateCardExpert | Method::PaygateCardStandard | Method::PaygateLink => 2,
            _ => 0,
        }
    }

    /// The Unzer public key of this config.
    pub fn public_key(self) -> String {
        format!("s-pub-demo-{}", self.slug())
    }

    /// The Unzer private key of this config (a fake sandbox key the simulator accepts).
    pub fn private_key(self) -> String {
        format!("s-priv-demo-{}-not-a-real-key", self.slug())
    }

    /// Unzer type-id infix of the payments the shop creates with this method.
    pub fn unzer_type(self) -> &'static str {
        match self {
            Method::CardStandard | Method::CardExpert => "crd",
            Method::Prepayment => "ppy",
            Method::PaylaterInvoice => "piv",
            Method::PaylaterDebit => "pdd",
            Method::Sofort => "sft",
            Method::InvoiceSecured => "ivs",
            Method::Invoice => "ivc",
            // Paygate payments have no Unzer type.
            Method::PaygateCardExpert
            | Method::PaygateCardStandard
            | Method::PaygateKlarna
            | Method::PaygatePaypal
            | Method::PaygateLink => "",
        }
    }
}

/// The demo configuration (TOML) for simulators at `pixi_url` (with its credentials) and
/// `unzer_base`. Quiet hours are off so that the demo does not depend on the time of day.
pub fn config_toml(
    pixi_url: &str,
    pixi_user: &str,
    pixi_password: &str,
    unzer_base: &str,
    paygate_base: &str,
) -> String {
    config_toml_with_keys(
        pixi_url,
        pixi_user,
        pixi_password,
        unzer_base,
        paygate_base,
        Method::private_key,
    )
}

/// [`config_toml`] with each method's Unzer private key from `private_key` instead of
/// [`Method::private_key`].
pub fn config_toml_with_keys(
    pixi_url: &str,
    pixi_user: &str,
    pixi_password: &str,
    unzer_base: &str,
    paygate_base: &str,
    private_key: fn(Method) -> String,
) -> String {
    let mut out = format!(
        r#"# Written by paybridge demo: pixi and Unzer simulators on loopback.
[tenant]
id = "{TENANT}"
timezone = "Europe/Berlin"
quiet_hours = "off"

[server]
listen = "127.0.0.1:8080"
database = "./paybridge.db"
poll_interval_secs = 1

[[erp]]
id = "{CONNECTION}"
kind = "pixi"
url = "{pixi_url}"
user = "{pixi_user}"
password = "plain:{pixi_password}"
"#
    );
    for m in Method::ALL {
        if m.is_paygate() {
            out.push_str(&paygate_method_block(m, paygate_base));
            continue;
        }
        out.push_str(&format!(
            r#"
# {label}
[[method]]
erp = "{CONNECTION}"
mandant = "{MANDANT}"
erp_method = "{code}"
psp = "unzer"
mode = "{mode}"
invoice_event = "{inv}"
return_event = "{ret}"
rounding_tolerance = {tol}
public_key = "{public}"
private_key = "plain:{private}"
api_host = "{unzer_base}"
"#,
            label = m.label(),
            code = m.code(),
            mode = m.mode(),
            inv = m.invoice_event(),
            ret = m.return_event(),
            tol = m.tolerance(),
            public = m.public_key(),
            private = private_key(m),
        ));
    }
    out
}

/// The app's notifier, with a copy of every payment-link mail it sent (the customer's inbox
/// for the harness's [`Step::PayLink`]).
struct TeeNotifier {
    inner: Arc<dyn Notifier>,
    links: Arc<RecordingNotifier>,
}

#[async_trait::async_trait]
impl Notifier for TeeNotifier {
    async fn notify(&self, problem: &NotifyProblem) -> Result<(), NotifyError> {
        self.inner.notify(problem).await
    }

    async fn payment_link(&self, mail: &PaymentLinkMail) -> Result<(), NotifyError> {
        self.inner.payment_link(mail).await?;
        self.links.payment_link(mail).await
    }
}

/// A Paygate payment as [`PspState`], from the simulator's totals (`AmountAuth`, `AmountCap`,
/// `AmountCred`) and its reversed flag: charged net of credits, the authorization reversed in
/// full, remaining what is still capturable of a reserved payment (a rest paybridge leaves to
/// expire shows here: Paygate's reverse would undo the last capture instead).
pub fn paygate_state(p: &SimPaymentView) -> PspState {
    let cents = |c: i64| amount(c);
    let reserved = matches!(p.kind, PaymentKind::Reserved);
    let remaining = if reserved && !p.reversed {
        (p.amount_auth - p.amount_cap).max(0)
    } else {
        0
    };
    PspState {
        charged: cents(p.amount_cap - p.amount_cred),
        reversed: cents(if p.reversed { p.amount_auth } else { 0 }),
        refunded: cents(p.amount_cred),
        remaining: cents(remaining),
        shipped: false,
    }
}

/// The `[[method]]` of a Paygate method of the demo, for the Paygate simulator at `paygate_base`.
pub fn paygate_method_block(m: Method, paygate_base: &str) -> String {
    format!(
        r#"
# {label}
[[method]]
erp = "{CONNECTION}"
mandant = "{MANDANT}"
erp_method = "{code}"
psp = "paygate"
mode = "{mode}"
invoice_event = "{inv}"
return_event = "{ret}"
rounding_tolerance = {tol}
merchant_id = "{PAYGATE_MERCHANT}"
encryption_key = "plain:{PAYGATE_BLOWFISH}"
hmac_key = "plain:{PAYGATE_HMAC}"
psp_method = "{pm}"
authorization_validity_days = 28
api_host = "{paygate_base}"
"#,
        label = m.label(),
        code = m.code(),
        mode = m.mode(),
        inv = m.invoice_event(),
        ret = m.return_event(),
        tol = m.tolerance(),
        pm = m.paygate_method(),
    )
}

// ------------------------------------------------------------------------------- money text

/// `cents` as a decimal amount (`6000` → `60.00`).
pub fn amount(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// An amount as the demo prints it: two decimals.
pub fn money_text(d: Decimal) -> String {
    let mut r = d.round_dp(2);
    r.rescale(2);
    r.to_string()
}

fn parse_amount(text: &str, what: &str) -> Result<Decimal, DemoError> {
    Decimal::from_str(text.trim())
        .map_err(|_| DemoError::Scenario(format!("{what}: {text:?} is not an amount")))
}

// ------------------------------------------------------------------------------- end states

/// One customer-account event in pixi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub event: String,
    pub amount: Decimal,
}

/// The customer-service ("Kundenservice") fields of the billing address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub holder: String,
    pub iban: String,
    pub bic: String,
    /// The payment reference the customer must quote.
    pub bank: String,
}

/// What pixi shows for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpState {
    /// `HOLD`, `OPEN` or `CLOSED`; `MISSING` when pixi has no such order.
    pub status: String,
    pub locked: bool,
    /// At least one order comment.
    pub commented: bool,
    /// Customer-account events of the order's customer, oldest first.
    pub bookings: Vec<Booking>,
    pub transfer: Option<Transfer>,
}

/// What Unzer shows for a payment (`amount{charged,canceled,remaining}` of the payment resource,
/// reversals from its `cancel-authorize` transactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspState {
    /// Net charged (charges − refunds), Unzer `amount.charged`.
    pub charged: Decimal,
    /// Σ successful reversals of the authorization / pending initial charge.
    pub reversed: Decimal,
    /// Σ successful refunds, Unzer `amount.canceled`.
    pub refunded: Decimal,
    /// Still capturable, Unzer `amount.remaining`.
    pub remaining: Decimal,
    /// A successful shipment transaction exists.
    pub shipped: bool,
}

/// An order's state at the end of a scenario, in pixi and at Unzer, plus paybridge's open
/// problem codes (the part before `:`): errors in `problems`, hints in `hints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndState {
    pub erp: ErpState,
    /// `None`: the order has no payment at Unzer.
    pub psp: Option<PspState>,
    /// Open (unsolved) errors, sorted.
    pub problems: Vec<String>,
    /// Current hints (`pending`, `hands_off`, `authorization_expiring`, …), sorted.
    pub hints: Vec<String>,
}

impl fmt::Display for EndState {
    /// Compact: `CLOSED locked charged 60.00 reversed 40.00 booked ZE 60.00 problem x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![self.erp.status.clone()];
        if self.erp.locked {
            parts.push("locked".into());
        }
        if self.erp.transfer.is_some() {
            parts.push("transfer-data".into());
        }
        if !self.erp.commented {
            parts.push("no-comment".into());
        }
        match &self.psp {
            None => parts.push("no-payment".into()),
            Some(p) => {
                let mut any = false;
                for (name, v) in [
                    ("charged", p.charged),
                    ("reversed", p.reversed),
                    ("refunded", p.refunded),
                    ("remaining", p.remaining),
                ] {
                    if !v.is_zero() {
                        parts.push(format!("{name} {}", money_text(v)));
                        any = true;
                    }
                }
                if !any {
                    parts.push("nothing-open".into());
                }
                if p.shipped {
                    parts.push("shipped".into());
                }
            }
        }
        if self.erp.bookings.is_empty() {
            parts.push("no-booking".into());
        } else {
            let b: Vec<String> = self
                .erp
                .bookings
                .iter()
                .map(|b| format!("{} {}", b.event, money_text(b.amount)))
                .collect();
            parts.push(format!("booked {}", b.join(", ")));
        }
        for p in &self.problems {
            parts.push(format!("problem {p}"));
        }
        for h in &self.hints {
            parts.push(format!("hint {h}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// The expected end state of a scenario, written with cents. Defaults: commented, not locked,
/// no transfer data, no bookings, a payment with everything zero, no problems, no hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    status: &'static str,
    locked: bool,
    commented: bool,
    transfer: bool,
    bookings: Vec<(&'static str, i64)>,
    payment: bool,
    charged: i64,
    reversed: i64,
    refunded: i64,
    remaining: i64,
    shipped: bool,
    problems: Vec<&'static str>,
    hints: Vec<&'static str>,
}

impl Expect {
    fn status(status: &'static str) -> Expect {
        Expect {
            status,
            locked: false,
            commented: true,
            transfer: false,
            bookings: Vec::new(),
            payment: true,
            charged: 0,
            reversed: 0,
            refunded: 0,
            remaining: 0,
            shipped: false,
            problems: Vec::new(),
            hints: Vec::new(),
        }
    }
    pub fn hold() -> Expect {
        Expect::status("HOLD")
    }
    pub fn open() -> Expect {
        Expect::status("OPEN")
    }
    pub fn closed() -> Expect {
        Expect::status("CLOSED")
    }
    pub fn locked(mut self) -> Expect {
        self.locked = true;
        self
    }
    pub fn no_comment(mut self) -> Expect {
        self.commented = false;
        self
    }
    /// The transfer data of the order's payment (prepayment, invoice) are in the customer-service
    /// fields.
    pub fn transfer(mut self) -> Expect {
        self.transfer = true;
        self
    }
    pub fn booked(mut self, event: &'static str, cents: i64) -> Expect {
        self.bookings.push((event, cents));
        self
    }
    pub fn no_payment(mut self) -> Expect {
        self.payment = false;
        self
    }
    pub fn charged(mut self, cents: i64) -> Expect {
        self.charged = cents;
        self
    }
    pub fn reversed(mut self, cents: i64) -> Expect {
        self.reversed = cents;
        self
    }
    pub fn refunded(mut self, cents: i64) -> Expect {
        self.refunded = cents;
        self
    }
    pub fn remaining(mut self, cents: i64) -> Expect {
        self.remaining = cents;
        self
    }
    pub fn shipped(mut self) -> Expect {
        self.shipped = true;
        self
    }
    /// An open error with this code (the part before `:`).
    pub fn problem(mut self, code: &'static str) -> Expect {
        self.problems.push(code);
        self
    }
    /// A hint with this code (the part before `:`).
    pub fn hint(mut self, code: &'static str) -> Expect {
        self.hints.push(code);
        self
    }

    /// The end state this describes; `transfer` is the payment's transfer data.
    pub fn end_state(&self, transfer: Option<Transfer>) -> EndState {
        let mut problems: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        let mut hints: Vec<String> = self.hints.iter().map(|h| h.to_string()).collect();
        hints.sort();
        EndState {
            erp: ErpState {
                status: self.status.to_string(),
                locked: self.locked,
                commented: self.commented,
                bookings: self
                    .bookings
                    .iter()
                    .map(|(e, c)| Booking {
                        event: e.to_string(),
                        amount: amount(*c),
                    })
                    .collect(),
                transfer: if self.transfer { transfer } else { None },
            },
            psp: self.payment.then(|| PspState {
                charged: amount(self.charged),
                reversed: amount(self.reversed),
                refunded: amount(self.refunded),
                remaining: amount(self.remaining),
                shipped: self.shipped,
            }),
            problems,
            hints,
        }
    }
}

// ------------------------------------------------------------------------------- scenarios

/// One step of a scenario, applied between two settles: to the simulators (pixi, Unzer and its
/// webhooks), to the app as an operator would ([`Step::HandsOff`]), or to the simulated clock
/// ([`Step::ClockAhead`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The shop interface imports the order into pixi (HOLD, lines HAL).
    Import,
    /// pixi ships lines (indexes into the order's lines; empty: every open line) and writes
    /// their invoice; the first invoice carries the freight. pixi closes the order once every
    /// line is final.
    Ship(Vec<usize>),
    /// Lines cancelled in pixi (STO).
    Cancel(Vec<usize>),
    /// Every line cancelled.
    CancelAll,
    /// A credit note of this many cents, "no DTAUS" set (paybridge refunds it).
    CreditNote(i64),
    /// A credit note pixi settled on its own ("no DTAUS" missing).
    SettledCreditNote(i64),
    /// The order is closed in pixi.
    Close,
    /// The customer's transfer of the full amount arrives at Unzer, and Unzer sends
    /// `payment.completed` to paybridge's webhook URL over HTTP.
    TransferReceived,
    /// A transfer of only this many cents arrives; Unzer sends `payment.partly`.
    PartialTransfer(i64),
    /// The pending authorization succeeds at Unzer (3-D Secure finished).
    AuthorizationSucceeds,
    /// pixi ships lines like [`Step::Ship`], and the invoice is settled outside paybridge before
    /// paybridge sees it: its amount is captured at Unzer with the method's own key pair (as in
    /// the Unzer portal, not through paybridge's ledger; Unzer sends `charge.succeeded`) and
    /// pixi marks the invoice paid.
    ShipPaidElsewhere(Vec<usize>),
    /// An operator takes the order out of automation (`App::set_hands_off(key, true, now)`).
    HandsOff,
    /// An operator puts it back (`App::set_hands_off(key, false, now)`).
    HandsOn,
    /// The customer opens the newest payment-link mail of the order and pays on Paygate's page
    /// (over HTTP); Paygate posts its notify to paybridge. The payment becomes the run's.
    PayLink,
    /// The customer opens the newest link and cancels on Paygate's page (a failed payment; the
    /// notify says so).
    CancelLink,
    /// The one simulated clock is moved to this many hours ahead of the real clock, unless it
    /// is that far already ([`Harness::clock_ahead`]): for **every** order of the run, so
    /// scenarios asking for the same hours share one jump. Every expected end state of the
    /// catalogue holds after it (card authorizations last 7 days).
    ClockAhead(u32),
}

/// How the shop started the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The method's usual start: authorized (card, Paylater), charged (Sofort), pending charge
    /// with transfer data (prepayment, invoice secured).
    Usual,
    /// Authorized, but for this many cents instead of the order total.
    AuthorizedCents(i64),
    /// The method's usual start, its transactions dated this many hours before the simulated
    /// now (`UnzerSim::set_dates`): an authorization made days ago.
    AuthorizedHoursAgo(u32),
    /// Authorization still pending (3-D Secure).
    Pending,
    /// The authorization failed at Unzer.
    Failed,
    /// A shop order whose KK-ID (payment id) is missing in pixi; the payment exists at Unzer.
    NoPaymentId,
    /// No payment at all: a manual order (shop number `P` + order number, no KK-ID).
    Manual,
}

/// A scripted order: creation in pixi + payment at Unzer, steps in phases, expected end state.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// pixi order number (unique within a run).
    pub order: i64,
    /// Stable name, for selecting scenarios in tests.
    pub key: &'static str,
    /// The flow, as the demo prints it (`3.3 capture per invoice`).
    pub flow: &'static str,
    pub method: Method,
    /// Gross line prices in cents (quantity 1 each).
    pub lines: Vec<i64>,
    /// Freight in cents (on the first invoice).
    pub freight: i64,
    /// Discount of the whole order in cents (pixi `Discount`, taken off the first invoice).
    pub discount: i64,
    pub start: Start,
    /// Steps per phase; every scenario's phase `n` runs before the same settle.
    pub phases: Vec<Vec<Step>>,
    pub expect: Expect,
}

impl Scenario {
    /// An order with lines 60.00 + 40.00, imported in phase 0.
    pub fn new(order: i64, key: &'static str, flow: &'static str, method: Method) -> Scenario {
        Scenario {
            order,
            key,
            flow,
            method,
            lines: vec![6000, 4000],
            freight: 0,
            discount: 0,
            start: Start::Usual,
            phases: vec![vec![Step::Import]],
            expect: Expect::open(),
        }
    }
    pub fn lines(mut self, cents: &[i64]) -> Scenario {
        self.lines = cents.to_vec();
        self
    }
    pub fn freight(mut self, cents: i64) -> Scenario {
        self.freight = cents;
        self
    }
    pub fn discount(mut self, cents: i64) -> Scenario {
        self.discount = cents;
        self
    }
    pub fn start(mut self, start: Start) -> Scenario {
        self.start = start;
        self
    }
    /// Steps in a phase before the import.
    pub fn before_import(mut self, steps: Vec<Step>) -> Scenario {
        self.phases.insert(0, steps);
        self
    }
    /// Steps in the next phase.
    pub fn then(mut self, steps: Vec<Step>) -> Scenario {
        self.phases.push(steps);
        self
    }
    pub fn ends_as(mut self, e: Expect) -> Scenario {
        self.expect = e;
        self
    }
    /// Order total in cents (lines + freight − discount).
    pub fn total(&self) -> i64 {
        self.lines.iter().sum::<i64>() + self.freight - self.discount
    }
}

/// The scripted set: every flow of behaviour.md §3.1–§3.5 and §3.9, in both modes for card (the
/// only family where the mode matters) and per payment-method family for the others, then the
/// seed-000 details of issue 12 (orders 10039–10050).
pub fn catalogue() -> Vec<Scenario> {
    use Method::*;
    use Step::*;
    let sc = Scenario::new;
    vec![
        // §3.1 order release
        sc(
            10001,
            "3.1-release-expert",
            "3.1 authorization checked, released",
            CardExpert,
        )
        .ends_as(Expect::open().remaining(10000)),
        sc(
            10002,
            "3.1-release-standard",
            "3.1 captured, then released",
            CardStandard,
        )
        .ends_as(Expect::open().charged(10000)),
        sc(
            10003,
            "3.1-mismatch",
            "3.1 amount mismatch: lock + problem",
            CardExpert,
        )
        .lines(&[25000])
        .start(Start::AuthorizedCents(2500))
        .ends_as(
            Expect::open()
                .locked()
                .remaining(2500)
                .problem("authorization_check"),
        ),
        sc(
            10004,
            "3.1-failed",
            "3.1 authorization failed: lock + problem",
            CardExpert,
        )
        .start(Start::Failed)
        .ends_as(Expect::open().locked().problem("authorization_check")),
        sc(
            10005,
            "3.1-no-payment-id",
            "3.1 no payment id: lock + problem",
            CardExpert,
        )
        .start(Start::NoPaymentId)
        .ends_as(
            Expect::open()
                .locked()
                .no_payment()
                .problem("authorization_check"),
        ),
        sc(
            10006,
            "3.1-rounding",
            "3.1 rounding difference absorbed",
            CardExpert,
        )
        .start(Start::AuthorizedCents(9999))
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(9999).booked("ZE", 10000)),
        sc(
            10007,
            "3.1-pending",
            "3.1 pending: stays on hold, then released",
            CardExpert,
        )
        .start(Start::Pending)
        .then(vec![AuthorizationSucceeds])
        .ends_as(Expect::open().remaining(10000)),
        sc(10008, "3.1-manual", "3.1 manual order ignored", CardExpert)
            .start(Start::Manual)
            .ends_as(Expect::hold().no_comment().no_payment()),
        // §3.2 prepayment
        sc(
            10009,
            "3.2-prepayment",
            "3.2 lock, receipt webhook, booked on close",
            Prepayment,
        )
        .then(vec![TransferReceived])
        .then(vec![Ship(vec![])])
        .ends_as(
            Expect::closed()
                .transfer()
                .charged(10000)
                .booked("VK", 10000),
        ),
        sc(
            10010,
            "3.2-shipped-before-receipt",
            "3.2 shipped before receipt: no booking",
            Prepayment,
        )
        .then(vec![Ship(vec![])])
        .ends_as(
            Expect::closed()
                .locked()
                .transfer()
                .remaining(10000)
                .problem("shipped_before_receipt"),
        ),
        sc(
            10011,
            "3.2-webhook-before-import",
            "3.2 receipt webhook before import",
            Prepayment,
        )
        .before_import(vec![TransferReceived])
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(10000).booked("VK", 10000)),
        sc(
            10012,
            "3.2-partial-transfer",
            "3.2 partial transfer: lock stays",
            Prepayment,
        )
        .then(vec![PartialTransfer(5000)])
        .ends_as(
            Expect::open()
                .locked()
                .transfer()
                .charged(5000)
                .remaining(5000)
                .hint("partly_paid"),
        ),
        // §3.3 capture on shipment / invoice
        sc(
            10013,
            "3.3-expert",
            "3.3 capture per invoice, freight on first",
            CardExpert,
        )
        .freight(495)
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(10495)
                .booked("ZE", 6495)
                .booked("ZE", 4000),
        ),
        sc(
            10014,
            "3.3-standard",
            "3.3 invoices checked against capture",
            CardStandard,
        )
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(10000)
                .booked("ZE", 6000)
                .booked("ZE", 4000),
        ),
        sc(
            10015,
            "3.3-paylater-invoice",
            "3.3 charge starts the payment term",
            PaylaterInvoice,
        )
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(10000).booked("PLI", 10000)),
        sc(
            10016,
            "3.3-paylater-debit",
            "3.3 charge per partial invoice",
            PaylaterDebit,
        )
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(10000)
                .booked("PLD", 6000)
                .booked("PLD", 4000),
        ),
        sc(
            10017,
            "3.3-sofort",
            "3.3 invoice checked against shop charge",
            Sofort,
        )
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(10000).booked("SOF", 10000)),
        sc(
            10018,
            "3.3-invoice-secured",
            "3.3 shipment reported, booked on close",
            InvoiceSecured,
        )
        .then(vec![Ship(vec![])])
        .ends_as(
            Expect::closed()
                .transfer()
                .remaining(10000)
                .shipped()
                .booked("RGS", 10000),
        ),
        // §3.4 cancellation
        sc(
            10019,
            "3.4-whole-expert",
            "3.4 whole order cancelled",
            CardExpert,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().reversed(10000)),
        sc(
            10020,
            "3.4-whole-standard",
            "3.4 whole order cancelled",
            CardStandard,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().refunded(10000)),
        sc(
            10021,
            "3.4-lines-expert",
            "3.4 line cancelled: payment closed",
            CardExpert,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .reversed(4000)
                .booked("ZE", 6000),
        ),
        sc(
            10022,
            "3.4-lines-standard",
            "3.4 line cancelled: refunded on close",
            CardStandard,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .refunded(4000)
                .booked("ZE", 6000),
        ),
        sc(
            10023,
            "3.4-prepayment-before-receipt",
            "3.4 cancelled before receipt",
            Prepayment,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().locked().transfer().reversed(10000)),
        sc(
            10024,
            "3.4-prepayment-after-receipt",
            "3.4 cancelled after receipt",
            Prepayment,
        )
        .then(vec![TransferReceived])
        .then(vec![CancelAll])
        .ends_as(Expect::closed().transfer().refunded(10000)),
        sc(
            10025,
            "3.4-prepayment-lines",
            "3.4 line cancelled after receipt",
            Prepayment,
        )
        .then(vec![TransferReceived])
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .transfer()
                .charged(6000)
                .refunded(4000)
                .booked("VK", 6000),
        ),
        sc(
            10026,
            "3.4-prepayment-line-then-receipt",
            "3.4 line cancelled, sent on receipt",
            Prepayment,
        )
        .then(vec![Cancel(vec![1])])
        .then(vec![TransferReceived])
        .then(vec![Ship(vec![0])])
        .ends_as(
            Expect::closed()
                .transfer()
                .charged(6000)
                .refunded(4000)
                .booked("VK", 6000),
        ),
        sc(
            10027,
            "3.4-paylater-invoice-whole",
            "3.4 cancelled before the term",
            PaylaterInvoice,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().reversed(10000)),
        sc(
            10028,
            "3.4-paylater-invoice-lines",
            "3.4 line cancelled after the term",
            PaylaterInvoice,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .reversed(4000)
                .booked("PLI", 6000),
        ),
        sc(
            10029,
            "3.4-paylater-debit-lines",
            "3.4 line cancelled: remainder expires",
            PaylaterDebit,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .remaining(4000)
                .booked("PLD", 6000),
        ),
        sc(
            10030,
            "3.4-sofort-whole",
            "3.4 whole order cancelled",
            Sofort,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().refunded(10000)),
        sc(
            10031,
            "3.4-sofort-lines",
            "3.4 line cancelled: refunded on close",
            Sofort,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .refunded(4000)
                .booked("SOF", 6000),
        ),
        sc(
            10032,
            "3.4-invoice-secured-lines",
            "3.4 line cancelled: sent on close",
            InvoiceSecured,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .transfer()
                .reversed(4000)
                .remaining(6000)
                .shipped()
                .booked("RGS", 6000),
        ),
        // §3.5 returns / credit notes
        sc(10033, "3.5-expert", "3.5 credit note refunded", CardExpert)
            .then(vec![Ship(vec![])])
            .then(vec![CreditNote(3000)])
            .ends_as(
                Expect::closed()
                    .charged(7000)
                    .refunded(3000)
                    .booked("ZE", 10000)
                    .booked("RE", -3000),
            ),
        sc(
            10034,
            "3.5-expert-two-charges",
            "3.5 credit note across two captures",
            CardExpert,
        )
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .then(vec![CreditNote(7000)])
        .ends_as(
            Expect::closed()
                .charged(3000)
                .refunded(7000)
                .booked("ZE", 6000)
                .booked("ZE", 4000)
                .booked("RE", -7000),
        ),
        sc(
            10035,
            "3.5-standard",
            "3.5 credit note refunded",
            CardStandard,
        )
        .then(vec![Ship(vec![])])
        .then(vec![CreditNote(3000)])
        .ends_as(
            Expect::closed()
                .charged(7000)
                .refunded(3000)
                .booked("ZE", 10000)
                .booked("RE", -3000),
        ),
        sc(10036, "3.5-sofort", "3.5 credit note refunded", Sofort)
            .then(vec![Ship(vec![])])
            .then(vec![CreditNote(2500)])
            .ends_as(
                Expect::closed()
                    .charged(7500)
                    .refunded(2500)
                    .booked("SOF", 10000)
                    .booked("SOR", -2500),
            ),
        sc(
            10037,
            "3.5-paylater-invoice",
            "3.5 credit note refunded",
            PaylaterInvoice,
        )
        .then(vec![Ship(vec![])])
        .then(vec![CreditNote(3000)])
        .ends_as(
            Expect::closed()
                .charged(7000)
                .refunded(3000)
                .booked("PLI", 10000)
                .booked("PLR", -3000),
        ),
        sc(
            10038,
            "3.5-settled-credit",
            "3.5 credit note settled in ERP: refused",
            CardExpert,
        )
        .then(vec![Ship(vec![])])
        .then(vec![SettledCreditNote(2000)])
        .ends_as(
            Expect::closed()
                .charged(10000)
                .booked("ZE", 10000)
                .problem("credit_settled"),
        ),
        // Issue 12, seed 000 to the letter.
        // (1) Unzer Invoice / Invoice Secured: transfer data in the customer-service fields.
        sc(
            10039,
            "3.2-invoice-secured-transfer",
            "3.2 released with the transfer data",
            InvoiceSecured,
        )
        .ends_as(Expect::open().transfer().remaining(10000)),
        sc(
            10040,
            "3.2-invoice-transfer",
            "3.2 transfer data at release, booked on close",
            Invoice,
        )
        .then(vec![Ship(vec![])])
        .ends_as(
            Expect::closed()
                .transfer()
                .remaining(10000)
                .booked("IV", 10000),
        ),
        // (2) Authorization lifetime (card: 7 days, the hint in the last 42 h): the
        // authorization is dated back at the Unzer simulator; 10042 expires with the day that
        // passes in the last phase (10041 is still in its last quarter after it).
        sc(
            10041,
            "3.3-authorization-expiring",
            "3.3 authorization expiring: hint, captured",
            CardExpert,
        )
        .start(Start::AuthorizedHoursAgo(132))
        .then(vec![Ship(vec![0])])
        .ends_as(
            Expect::open()
                .charged(6000)
                .remaining(4000)
                .booked("ZE", 6000)
                .hint("authorization_expiring"),
        ),
        sc(
            10042,
            "3.3-authorization-expired",
            "3.3 authorization expired: no capture",
            CardExpert,
        )
        .start(Start::AuthorizedHoursAgo(150))
        .then(vec![])
        .then(vec![])
        .then(vec![])
        .then(vec![ClockAhead(25), Ship(vec![])])
        .ends_as(
            Expect::closed()
                .remaining(10000)
                .problem("authorization_expired"),
        ),
        sc(
            10043,
            "3.1-authorization-expired",
            "3.1 expired at import: lock + problem",
            CardExpert,
        )
        .start(Start::AuthorizedHoursAgo(8 * 24))
        .ends_as(
            Expect::open()
                .locked()
                .remaining(10000)
                .problem("authorization_check")
                .problem("authorization_expired"),
        ),
        // (3) Pending too long. The demo's only clock jump (shared with 10042), in its last
        // phase: one day passes for every order.
        sc(
            10044,
            "3.1-pending-too-long",
            "3.1 pending > 24 h: error, stays on hold",
            CardExpert,
        )
        .start(Start::Pending)
        .then(vec![])
        .then(vec![])
        .then(vec![])
        .then(vec![ClockAhead(25)])
        .ends_as(Expect::hold().remaining(10000).problem("pending_too_long")),
        // (4) Hands-off: out of automation, then back.
        sc(
            10045,
            "3.9-hands-off",
            "3.9 hands-off: shipped, not captured",
            CardExpert,
        )
        .then(vec![HandsOff])
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().remaining(10000).hint("hands_off")),
        sc(
            10046,
            "3.9-hands-on",
            "3.9 back in automation: captured",
            CardExpert,
        )
        .then(vec![HandsOff])
        .then(vec![Ship(vec![])])
        .then(vec![HandsOn])
        .ends_as(Expect::closed().charged(10000).booked("ZE", 10000)),
        // (5) A credit note naming no invoice, beyond what paybridge captured itself.
        sc(
            10047,
            "3.5-foreign-capture",
            "3.5 return of a capture outside paybridge",
            CardExpert,
        )
        .then(vec![ShipPaidElsewhere(vec![0])])
        .then(vec![Ship(vec![1])])
        .then(vec![CreditNote(5000)])
        .ends_as(
            Expect::closed()
                .charged(10000)
                .booked("ZE", 4000)
                .problem("foreign_capture")
                .hint("captured_elsewhere"),
        ),
        // (6) An invoice captured outside paybridge: named, and expert mode still closes.
        sc(
            10048,
            "3.3-captured-elsewhere",
            "3.3 invoice paid elsewhere: named, closed",
            CardExpert,
        )
        .lines(&[5000, 3000, 2000])
        .then(vec![ShipPaidElsewhere(vec![0])])
        .then(vec![Ship(vec![1]), Cancel(vec![2])])
        .ends_as(
            Expect::closed()
                .charged(8000)
                .reversed(2000)
                .booked("ZE", 3000)
                .hint("captured_elsewhere"),
        ),
        // (7) pixiGetOrderTotals item rows: Σ Subtotal + ShipCost − |Discount| to the cent.
        sc(
            10049,
            "3.1-discount-freight",
            "3.1 lines + freight − discount match",
            CardExpert,
        )
        .lines(&[2999, 4550, 1275])
        .freight(495)
        .discount(1000)
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1, 2])])
        .ends_as(
            Expect::closed()
                .charged(8319)
                .booked("ZE", 2494)
                .booked("ZE", 5825),
        ),
        sc(
            10050,
            "3.1-discount-freight-standard",
            "3.1 lines + freight − discount captured",
            CardStandard,
        )
        .lines(&[2999, 4550, 1275])
        .freight(495)
        .discount(1000)
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(8319).booked("ZE", 8319)),
    ]
    .into_iter()
    .chain(paygate_catalogue())
    .collect()
}

/// The flows of behaviour.md §3.1–§3.5 on Computop Paygate (orders 11001–11032): the same
/// engine decisions as for Unzer, with Paygate's own rules — PayPal is booked in the shop, and
/// the rest of an authorization after a partial capture is left to expire (Paygate's reverse
/// would undo the last capture), so it shows as `remaining`.
pub fn paygate_catalogue() -> Vec<Scenario> {
    use Method::*;
    use Step::*;
    let sc = Scenario::new;
    vec![
        sc(
            11001,
            "pg-3.1-release-expert",
            "3.1 Paygate: checked, released",
            PaygateCardExpert,
        )
        .ends_as(Expect::open().remaining(10000)),
        sc(
            11002,
            "pg-3.1-release-standard",
            "3.1 Paygate: captured, released",
            PaygateCardStandard,
        )
        .ends_as(Expect::open().charged(10000)),
        sc(
            11003,
            "pg-3.1-mismatch",
            "3.1 Paygate: amount mismatch",
            PaygateCardExpert,
        )
        .lines(&[25000])
        .start(Start::AuthorizedCents(2500))
        .ends_as(
            Expect::open()
                .locked()
                .remaining(2500)
                .problem("authorization_check"),
        ),
        sc(
            11004,
            "pg-3.1-failed",
            "3.1 Paygate: authorization failed",
            PaygateCardExpert,
        )
        .start(Start::Failed)
        .ends_as(Expect::open().locked().problem("authorization_check")),
        sc(
            11005,
            "pg-3.1-pending",
            "3.1 Paygate: pending, then released",
            PaygateCardExpert,
        )
        .start(Start::Pending)
        .then(vec![AuthorizationSucceeds])
        .ends_as(Expect::open().remaining(10000)),
        sc(
            11006,
            "pg-3.1-manual",
            "3.1 Paygate: manual order ignored",
            PaygateCardExpert,
        )
        .start(Start::Manual)
        .ends_as(Expect::hold().no_comment().no_payment()),
        sc(
            11010,
            "pg-3.3-expert",
            "3.3 Paygate: capture per invoice",
            PaygateCardExpert,
        )
        .freight(495)
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(10495)
                .booked("ZE", 6495)
                .booked("ZE", 4000),
        ),
        sc(
            11011,
            "pg-3.3-standard",
            "3.3 Paygate: invoices checked",
            PaygateCardStandard,
        )
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(10000)
                .booked("ZE", 6000)
                .booked("ZE", 4000),
        ),
        sc(
            11012,
            "pg-3.3-klarna",
            "3.3 Paygate Klarna: captured",
            PaygateKlarna,
        )
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(10000).booked("KLA", 10000)),
        sc(
            11013,
            "pg-3.3-paypal",
            "3.3 Paygate PayPal: booked in shop",
            PaygatePaypal,
        )
        .then(vec![Ship(vec![])])
        .ends_as(Expect::closed().charged(10000).booked("PPL", 10000)),
        sc(
            11020,
            "pg-3.4-whole-expert",
            "3.4 Paygate: whole order reversed",
            PaygateCardExpert,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().reversed(10000)),
        sc(
            11021,
            "pg-3.4-whole-standard",
            "3.4 Paygate: whole order credited",
            PaygateCardStandard,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().refunded(10000)),
        sc(
            11022,
            "pg-3.4-lines-expert",
            "3.4 Paygate: rest left to expire",
            PaygateCardExpert,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .remaining(4000)
                .booked("ZE", 6000),
        ),
        sc(
            11023,
            "pg-3.4-lines-standard",
            "3.4 Paygate: line credited",
            PaygateCardStandard,
        )
        .then(vec![Ship(vec![0]), Cancel(vec![1])])
        .ends_as(
            Expect::closed()
                .charged(6000)
                .refunded(4000)
                .booked("ZE", 6000),
        ),
        sc(
            11024,
            "pg-3.4-paypal-whole",
            "3.4 Paygate PayPal: credited",
            PaygatePaypal,
        )
        .then(vec![CancelAll])
        .ends_as(Expect::closed().refunded(10000)),
        sc(
            11030,
            "pg-3.5-expert",
            "3.5 Paygate: credit note",
            PaygateCardExpert,
        )
        .then(vec![Ship(vec![])])
        .then(vec![CreditNote(3000)])
        .ends_as(
            Expect::closed()
                .charged(7000)
                .refunded(3000)
                .booked("ZE", 10000)
                .booked("RE", -3000),
        ),
        sc(
            11031,
            "pg-3.5-two-captures",
            "3.5 Paygate: credit across captures",
            PaygateCardExpert,
        )
        .then(vec![Ship(vec![0])])
        .then(vec![Ship(vec![1])])
        .then(vec![CreditNote(7000)])
        .ends_as(
            Expect::closed()
                .charged(3000)
                .refunded(7000)
                .booked("ZE", 6000)
                .booked("ZE", 4000)
                .booked("RE", -7000),
        ),
        sc(
            11032,
            "pg-3.5-paypal",
            "3.5 Paygate PayPal: credit note",
            PaygatePaypal,
        )
        .then(vec![Ship(vec![])])
        .then(vec![CreditNote(2500)])
        .ends_as(
            Expect::closed()
                .charged(7500)
                .refunded(2500)
                .booked("PPL", 10000)
                .booked("PPR", -2500),
        ),
    ]
}

/// The scenarios of [`catalogue`] with these keys, in the order given.
pub fn scenarios(keys: &[&str]) -> Result<Vec<Scenario>, DemoError> {
    let all = catalogue();
    keys.iter()
        .map(|k| {
            all.iter()
                .find(|s| s.key == *k)
                .cloned()
                .ok_or_else(|| DemoError::Scenario(format!("no scenario {k:?} in the catalogue")))
        })
        .collect()
}

// ------------------------------------------------------------------------------- harness

/// Replaces the store the app is built with (e.g. a counting decorator in the bench).
pub type StoreWrapper = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

/// Knobs of [`Harness::start_with`]; the default is exactly `paybridge serve`'s wiring.
#[derive(Default)]
pub struct Options {
    /// Request timeout of the Unzer and Paygate connectors (default: the connectors' own, 60 s).
    /// Fault tests shorten it so that a held-back reply times out quickly. The connectors are
    /// then built like `startup::prepare` builds them (router by config kind, wrapped in the
    /// logging PSP).
    pub unzer_request_timeout: Option<Duration>,
    /// With `unzer_request_timeout`: leave out the logging wrapper (`connectors::LoggedPsp`),
    /// so the app talks to the Unzer connector through the router only. Lets a test tell a
    /// wrapper's behaviour from the connector's.
    pub without_psp_logging: bool,
    /// Wraps the SQLite store.
    pub wrap_store: Option<StoreWrapper>,
    /// Runs on these backends instead of SQLite (the AWS backends on moto in the e2e suite).
    pub backends: Option<(Arc<dyn Store>, Arc<dyn paybridge_core::queue::Queue>)>,
    /// The pixi login (user, password) the simulator accepts and the configuration holds,
    /// instead of the simulator's defaults (the secret-leak test uses distinctive values).
    pub pixi_login: Option<(String, String)>,
    /// Each method's Unzer private key (registered at the simulator and written into the
    /// configuration) instead of [`Method::private_key`].
    pub private_key: Option<fn(Method) -> String>,
    /// The Paygate merchant's Blowfish and HMAC passwords (registered at the simulator and
    /// written into the configuration) instead of [`PAYGATE_BLOWFISH`] and [`PAYGATE_HMAC`].
    pub paygate_keys: Option<(String, String)>,
    /// TOML appended to the generated configuration, e.g. an `[smtp]` section.
    pub extra_config: Option<String>,
    /// PEM certificates the e-mail notifier trusts besides the public roots (an SMTP test server
    /// with a self-signed certificate): the notifier is built from the configuration's `[smtp]`
    /// again with them (`EmailNotifier::with_tls_roots`).
    pub smtp_tls_roots: Option<Vec<u8>>,
    /// Adds the payment-link method ([`Method::PaygateLink`], behaviour.md §3.6); the
    /// configuration then needs an `[smtp]` section (in `extra_config`). The customer's mails
    /// are sent through it and also kept by the harness ([`Harness::links`]).
    pub payment_links: bool,
}

/// What one [`Harness::settle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Poll/work rounds.
    pub rounds: usize,
    /// Jobs run.
    pub jobs: usize,
    /// How far the simulated clock was moved past backoffs, in seconds.
    pub skipped_secs: i64,
}

/// An order created by [`Harness::import`] or prepared by [`Harness::prepare`].
#[derive(Debug, Clone)]
pub struct Running {
    pub scenario: Scenario,
    /// The Unzer payment id (`None` for a manual order).
    pub payment_id: Option<String>,
    /// pixi line keys, in the scenario's line order (after the import).
    pub line_keys: Vec<i64>,
}

impl Running {
    /// The expected end state (transfer data resolved for this payment).
    pub fn expected(&self) -> EndState {
        let transfer = self
            .payment_id
            .as_deref()
            .and_then(|p| p.rsplit('-').next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| {
                let b = sim_bank_data(n);
                Transfer {
                    holder: b.holder,
                    iban: b.iban,
                    bic: b.bic,
                    bank: b.descriptor,
                }
            });
        self.scenario.expect.end_state(transfer)
    }
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub payment_id: Option<String>,
    pub expected: EndState,
    pub actual: EndState,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.expected == self.actual
    }
}

/// Simulators + the app as `serve` builds it + the HTTP router on a loopback socket + a
/// simulated clock. See the module documentation.
pub struct Harness {
    /// The payment-link mails paybridge sent (a copy; they also went out through `[smtp]`).
    pub links: Arc<RecordingNotifier>,
    pub pixi: PixiSim,
    pub unzer: UnzerSim,
    pub paygate: PaygateSim,
    pub app: Arc<App>,
    http: Option<HttpHandle>,
    /// The generated configuration file.
    pub config_path: PathBuf,
    /// How far the simulated clock is ahead of the real one, in milliseconds.
    offset_ms: AtomicI64,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts everything with `serve`'s wiring.
    pub async fn start() -> Result<Harness, DemoError> {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Result<Harness, DemoError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let pixi = match &options.pixi_login {
            Some((user, password)) => PixiSim::start_with(loopback, user, password).await,
            None => PixiSim::start_on(loopback).await,
        }
        .map_err(DemoError::Simulator)?;
        let unzer = UnzerSim::start_on(loopback)
            .await
            .map_err(DemoError::Simulator)?;
        let paygate = PaygateSim::start_on(loopback)
            .await
            .map_err(DemoError::Simulator)?;
        let (paygate_blowfish, paygate_hmac) = (options.paygate_keys.clone())
            .unwrap_or_else(|| (PAYGATE_BLOWFISH.into(), PAYGATE_HMAC.into()));
        paygate.add_merchant(PAYGATE_MERCHANT, &paygate_blowfish, &paygate_hmac);
        let private_key = options.private_key.unwrap_or(Method::private_key);
        for m in Method::ALL.into_iter().filter(|m| !m.is_paygate()) {
            unzer.add_keypair(&m.public_key(), &private_key(m));
        }
        let dir = tempfile::Builder::new()
            .prefix("paybridge-demo-")
            .tempdir()
            .map_err(DemoError::Io)?;
        let config_path = dir.path().join("paybridge.toml");
        let mut text = config_toml_with_keys(
            &pixi.url(),
            &pixi.user(),
            &pixi.password(),
            &unzer.base_url(),
            &paygate.base_url(),
            private_key,
        )
        .replace(
            &format!("\"plain:{PAYGATE_BLOWFISH}\""),
            &format!("\"plain:{paygate_blowfish}\""),
        )
        .replace(
            &format!("\"plain:{PAYGATE_HMAC}\""),
            &format!("\"plain:{paygate_hmac}\""),
        );
        // paybridge's listener first: its URL is the `public_url` payment links name.
        let listener = tokio::net::TcpListener::bind(loopback)
            .await
            .map_err(DemoError::Io)?;
        let public_url = format!("http://{}", listener.local_addr().map_err(DemoError::Io)?);
        text = text.replacen(
            "poll_interval_secs = 1\n",
            &format!("poll_interval_secs = 1\npublic_url = \"{public_url}\"\n"),
            1,
        );
        if options.payment_links {
            text.push_str(
                &paygate_method_block(Method::PaygateLink, &paygate.base_url())
                    .replace(
                        &format!("\"plain:{PAYGATE_BLOWFISH}\""),
                        &format!("\"plain:{paygate_blowfish}\""),
                    )
                    .replace(
                        &format!("\"plain:{PAYGATE_HMAC}\""),
                        &format!("\"plain:{paygate_hmac}\""),
                    ),
            );
        }
        if let Some(extra) = &options.extra_config {
            text.push('\n');
            text.push_str(extra);
        }
        std::fs::write(&config_path, text).map_err(DemoError::Io)?;

        // Exactly what `paybridge serve` does (minus the reachability check and the signal).
        let prepared = startup::prepare(&config_path)?;
        let database = prepared.resolve(&prepared.config.server.database);
        let config = Arc::clone(&prepared.config);
        let mut app = serve::build_app(prepared, &database)?;
        app.holder = "paybridge-demo".into();
        if let (Some(pem), Some(smtp)) = (&options.smtp_tls_roots, &config.smtp) {
            let mailer = EmailNotifier::with_tls_roots(smtp, config.tenant.id.clone(), pem)
                .map_err(|e| DemoError::Scenario(format!("cannot set up e-mail: {e}")))?;
            app.notifier = Arc::new(mailer);
        }
        if let Some(timeout) = options.unzer_request_timeout {
            let unzer_psp = UnzerPsp::for_config_with(
                &config,
                UnzerTimeouts {
                    connect: Duration::from_secs(2),
                    request: timeout,
                },
            )
            .map_err(|e| DemoError::Unzer(e.to_string()))?;
            let paygate_psp = PaygatePsp::for_config_resolved(
                &config,
                PaygateTimeouts {
                    connect: Duration::from_secs(2),
                    request: timeout,
                },
                &SecretRef::resolve_local,
            )
            .map_err(|e| DemoError::Unzer(e.to_string()))?;
            let router = PspRouter::default()
                .with(PspKind::Unzer, Arc::new(unzer_psp))
                .with(PspKind::Paygate, Arc::new(paygate_psp));
            app.psp = if options.without_psp_logging {
                Arc::new(router)
            } else {
                Arc::new(LoggedPsp::new(Arc::new(router)))
            };
        }
        if let Some((store, queue)) = options.backends {
            app.store = store;
            app.queue = queue;
        }
        if let Some(wrap) = options.wrap_store {
            app.store = wrap(Arc::clone(&app.store));
        }
        let links = Arc::new(RecordingNotifier::default());
        app.notifier = Arc::new(TeeNotifier {
            inner: Arc::clone(&app.notifier),
            links: Arc::clone(&links),
        });
        let app = Arc::new(app);
        let http = serve::spawn_http(Arc::clone(&app), listener).map_err(DemoError::Io)?;
        Ok(Harness {
            pixi,
            unzer,
            paygate,
            app,
            http: Some(http),
            links,
            config_path,
            offset_ms: AtomicI64::new(0),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT{path}` of paybridge's listener.
    pub fn url(&self, path: &str) -> String {
        match &self.http {
            Some(h) => h.url(path),
            None => String::new(),
        }
    }

    /// Where Unzer sends webhooks.
    pub fn webhook_url(&self) -> String {
        self.url("/webhooks/unzer")
    }

    /// The directory holding the configuration and the database.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The simulated now: the real time plus every jump made so far.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves the simulated clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds().max(0), Ordering::SeqCst);
    }

    /// Moves the simulated clock to `by` ahead of the real one, unless it is that far already.
    pub fn clock_ahead(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_max(by.num_milliseconds(), Ordering::SeqCst);
    }

    /// The store key of a pixi order.
    pub fn order_key(&self, order: i64) -> OrderKey {
        OrderKey::new(TENANT, CONNECTION, &order.to_string())
    }

    /// Polls and works until a poll plans nothing, no job ran and the queue is empty. When only
    /// delayed jobs remain (retries), the simulated clock jumps forward instead of waiting.
    pub async fn settle(&self) -> Result<Settled, DemoError> {
        let mut done = Settled::default();
        for _ in 0..MAX_ROUNDS {
            done.rounds += 1;
            let now = self.now();
            let poll = self.app.poll_cycle(now).await?;
            let mut ran = 0;
            loop {
                let n = self.app.work_once(BATCH, now).await?;
                if n == 0 {
                    break;
                }
                ran += n;
                if ran > MAX_JOBS_PER_ROUND {
                    return Err(DemoError::Scenario(format!(
                        "more than {MAX_JOBS_PER_ROUND} jobs in one round: a job loop"
                    )));
                }
            }
            done.jobs += ran;
            let depth = self.app.queue.depth().await?;
            if poll.ops_planned == 0 && ran == 0 {
                if depth == 0 {
                    return Ok(done);
                }
                // Only delayed work is left: jump past its backoff.
                self.advance(chrono::Duration::seconds(CLOCK_STEP_SECS));
                done.skipped_secs += CLOCK_STEP_SECS;
            }
        }
        Err(DemoError::Scenario(format!(
            "paybridge did not come to rest within {MAX_ROUNDS} poll/work rounds"
        )))
    }

    /// Creates the scenario's payment at Unzer (not yet the pixi order).
    pub fn prepare(&self, scenario: &Scenario) -> Running {
        if scenario.method.is_paygate() {
            return self.prepare_paygate(scenario);
        }
        let m = scenario.method;
        let total = money_text(amount(scenario.total()));
        let pk = m.public_key();
        let payment_id = match scenario.start {
            Start::Manual | Start::NoPaymentId => None,
            Start::Pending | Start::Failed => Some(self.unzer.create(NewPayment {
                public_key: pk,
                type_infix: m.unzer_type().into(),
                currency: "EUR".into(),
                amount: total,
                initial: if scenario.start == Start::Pending {
                    Initial::AuthorizePending
                } else {
                    Initial::AuthorizeFailed
                },
                order_id: None,
            })),
            Start::AuthorizedCents(c) => {
                Some(
                    self.unzer
                        .authorized(&pk, m.unzer_type(), "EUR", &money_text(amount(c))),
                )
            }
            Start::Usual | Start::AuthorizedHoursAgo(_) => Some(match m {
                Method::CardStandard
                | Method::CardExpert
                | Method::PaylaterInvoice
                | Method::PaylaterDebit
                // (Paygate methods are prepared by `prepare_paygate`.)
                | Method::PaygateCardExpert
                | Method::PaygateCardStandard
                | Method::PaygateKlarna
                | Method::PaygatePaypal
                | Method::PaygateLink => {
                    self.unzer.authorized(&pk, m.unzer_type(), "EUR", &total)
                }
                Method::Sofort => self.unzer.charged(&pk, m.unzer_type(), "EUR", &total),
                Method::Prepayment => self.unzer.prepayment(&pk, "EUR", &total),
                Method::InvoiceSecured => self.unzer.invoice_secured(&pk, "EUR", &total),
                Method::Invoice => self.unzer.create(NewPayment {
                    public_key: pk,
                    type_infix: m.unzer_type().into(),
                    currency: "EUR".into(),
                    amount: total,
                    initial: Initial::ChargePending,
                    order_id: None,
                }),
            }),
        };
        if let (Start::AuthorizedHoursAgo(hours), Some(p)) = (scenario.start, &payment_id) {
            self.unzer.set_dates(p, self.hours_ago(hours));
        }
        Running {
            scenario: scenario.clone(),
            payment_id,
            line_keys: Vec::new(),
        }
    }

    /// Creates the scenario's payment at Paygate: reserved (card, Klarna) or booked (PayPal),
    /// with the order number as the shop's TransID.
    fn prepare_paygate(&self, scenario: &Scenario) -> Running {
        let m = scenario.method;
        if m == Method::PaygateLink {
            // The order comes without a payment: paybridge asks for one (§3.6).
            return Running {
                scenario: scenario.clone(),
                payment_id: None,
                line_keys: Vec::new(),
            };
        }
        let reserved_or_booked = if m == Method::PaygatePaypal {
            PaymentKind::Booked
        } else {
            PaymentKind::Reserved
        };
        let create = |cents: i64, kind: PaymentKind| {
            self.paygate.create_payment(
                PAYGATE_MERCHANT,
                &format!("T{}", scenario.order),
                cents,
                "EUR",
                kind,
            )
        };
        let payment_id = match scenario.start {
            Start::Manual | Start::NoPaymentId => None,
            Start::Pending => Some(create(scenario.total(), PaymentKind::Pending)),
            Start::Failed => Some(create(scenario.total(), PaymentKind::Failed)),
            Start::AuthorizedCents(c) => Some(create(c, reserved_or_booked)),
            Start::Usual | Start::AuthorizedHoursAgo(_) => {
                Some(create(scenario.total(), reserved_or_booked))
            }
        };
        Running {
            scenario: scenario.clone(),
            payment_id,
            line_keys: Vec::new(),
        }
    }

    /// The simulated now less `hours`.
    pub fn hours_ago(&self, hours: u32) -> DateTime<Utc> {
        self.now() - chrono::Duration::hours(i64::from(hours))
    }

    /// Prepares the payment and imports the order (for tests that drive steps themselves).
    pub async fn import(&self, scenario: &Scenario) -> Result<Running, DemoError> {
        let mut run = self.prepare(scenario);
        self.apply(&mut run, &Step::Import).await?;
        Ok(run)
    }

    fn keys(&self, run: &Running, idx: &[usize]) -> Result<Vec<i64>, DemoError> {
        idx.iter()
            .map(|i| {
                run.line_keys.get(*i).copied().ok_or_else(|| {
                    DemoError::Scenario(format!(
                        "order {}: no line {i} (imported yet?)",
                        run.scenario.order
                    ))
                })
            })
            .collect()
    }

    fn pid<'r>(&self, run: &'r Running) -> Result<&'r str, DemoError> {
        run.payment_id.as_deref().ok_or_else(|| {
            DemoError::Scenario(format!("order {} has no payment", run.scenario.order))
        })
    }

    /// Applies one step (see [`Step`]).
    pub async fn apply(&self, run: &mut Running, step: &Step) -> Result<(), DemoError> {
        let nr = run.scenario.order;
        let imported = self.pixi.order(nr).is_some();
        if !imported
            && !matches!(
                step,
                Step::Import
                    | Step::TransferReceived
                    | Step::PartialTransfer(_)
                    | Step::ClockAhead(_)
            )
        {
            return Err(DemoError::Scenario(format!(
                "order {nr}: {step:?} before the import"
            )));
        }
        match step {
            Step::Import => {
                let s = &run.scenario;
                let mut o = NewOrder::new(nr, s.method.code())
                    .customer_email(&format!("customer-{nr}@example.com"));
                for c in &s.lines {
                    o = o.line(1, &money_text(amount(*c)));
                }
                if s.freight > 0 {
                    o = o.ship_cost(&money_text(amount(s.freight)));
                }
                if s.discount > 0 {
                    o = o.discount(&money_text(amount(s.discount)));
                }
                o = match (&run.payment_id, s.start) {
                    (Some(p), _) => o.pay_id(p),
                    (None, Start::Manual) => o.external(&format!("P{nr}")),
                    (None, _) => o,
                };
                self.pixi.add_order(o);
                run.line_keys = self
                    .pixi
                    .order(nr)
                    .map(|o| o.lines.iter().map(|l| l.key).collect())
                    .unwrap_or_default();
            }
            Step::Ship(idx) => {
                let keys = self.keys(run, idx)?;
                self.pixi.ship_lines(nr, &keys);
            }
            Step::Cancel(idx) => {
                let keys = self.keys(run, idx)?;
                self.pixi.cancel_lines(nr, &keys);
            }
            Step::CancelAll => {
                let keys = run.line_keys.clone();
                self.pixi.cancel_lines(nr, &keys);
            }
            Step::CreditNote(c) => {
                self.pixi.create_credit_note(nr, &money_text(amount(*c)));
            }
            Step::SettledCreditNote(c) => {
                let credit = self.pixi.create_credit_note(nr, &money_text(amount(*c)));
                self.pixi.set_invoice_paid(&credit, true);
            }
            Step::Close => self.pixi.close_order(nr),
            Step::TransferReceived | Step::PartialTransfer(_) => {
                let pid = self.pid(run)?.to_string();
                let (cents, event) = match step {
                    Step::PartialTransfer(c) => (*c, "payment.partly"),
                    _ => (run.scenario.total(), "payment.completed"),
                };
                self.unzer
                    .receive_transfer(&pid, &money_text(amount(cents)));
                let status = self.send_webhook(event, &pid).await?;
                if status != 200 {
                    return Err(DemoError::Scenario(format!(
                        "order {nr}: the webhook was answered with HTTP {status}"
                    )));
                }
            }
            Step::AuthorizationSucceeds if run.scenario.method.is_paygate() => {
                let pid = self.pid(run)?.to_string();
                if !self.paygate.settle(&pid, None, true) {
                    return Err(DemoError::Scenario(format!(
                        "payment {pid} has no pending authorization"
                    )));
                }
                self.expect_200(nr, self.send_webhook("", &pid).await?)?;
            }
            Step::AuthorizationSucceeds => {
                let pid = self.pid(run)?.to_string();
                let initial = self
                    .unzer
                    .transactions(&pid)
                    .into_iter()
                    .next()
                    .map(|t| t.id)
                    .ok_or_else(|| {
                        DemoError::Scenario(format!("payment {pid} has no transaction"))
                    })?;
                self.unzer.settle(&pid, &initial, true);
            }
            Step::ShipPaidElsewhere(idx) => {
                let keys = self.keys(run, idx)?;
                let invoice = self.pixi.ship_lines(nr, &keys);
                let total = self
                    .pixi
                    .invoice(&invoice)
                    .map(|i| i.total)
                    .ok_or_else(|| DemoError::Scenario(format!("no invoice {invoice}")))?;
                self.capture_outside(run, total).await?;
                let pid = self.pid(run)?.to_string();
                let status = self.send_webhook("charge.succeeded", &pid).await?;
                if status != 200 {
                    return Err(DemoError::Scenario(format!(
                        "order {nr}: the webhook was answered with HTTP {status}"
                    )));
                }
                self.pixi.set_invoice_paid(&invoice, true);
            }
            Step::HandsOff | Step::HandsOn => {
                let off = *step == Step::HandsOff;
                let key = self.order_key(nr);
                if !self.app.set_hands_off(&key, off, self.now()).await? {
                    return Err(DemoError::Scenario(format!(
                        "order {nr}: {step:?} changed nothing (unknown to paybridge, or already so)"
                    )));
                }
            }
            Step::PayLink | Step::CancelLink => {
                let url = self.link_of(nr)?;
                let pid = if *step == Step::PayLink {
                    self.paygate.pay_link(&url).await
                } else {
                    self.paygate.cancel_link(&url).await
                }
                .map_err(DemoError::Http)?;
                if *step == Step::PayLink {
                    run.payment_id = Some(pid);
                }
            }
            Step::ClockAhead(hours) => {
                self.clock_ahead(chrono::Duration::hours(i64::from(*hours)));
            }
        }
        Ok(())
    }

    /// Captures `total` of the order's payment at Unzer outside paybridge: through the Unzer
    /// connector with the method config's key pair (what a capture in the Unzer portal does),
    /// never through paybridge's ledger.
    async fn capture_outside(&self, run: &Running, total: Decimal) -> Result<(), DemoError> {
        let pid = self.pid(run)?;
        let code = run.scenario.method.code();
        let cfg = self
            .app
            .config
            .method_for(CONNECTION, MANDANT, code)
            .ok_or_else(|| DemoError::Scenario(format!("no method config {code}")))?;
        let payment = self
            .app
            .psp
            .fetch(cfg, pid)
            .await
            .map_err(|e| DemoError::Unzer(e.to_string()))?;
        let amount =
            Money::new(total, payment.currency).map_err(|e| DemoError::Unzer(e.to_string()))?;
        let reference = format!("outside-paybridge-{}", run.scenario.order);
        match self
            .app
            .psp
            .execute(cfg, &payment, &PspCall::Capture { amount }, &reference)
            .await
        {
            PspOutcome::Done { .. } => Ok(()),
            other => Err(DemoError::Unzer(format!(
                "capture outside paybridge on {pid}: {other:?}"
            ))),
        }
    }

    /// Unzer POSTs the webhook for `event` on `payment_id` to paybridge's listener; the HTTP
    /// status of the answer.
    pub async fn send_webhook(&self, event: &str, payment_id: &str) -> Result<u16, DemoError> {
        if self.paygate.payment(payment_id).is_some() {
            // Paygate's notify names no event: it reports the payment's last step.
            return self
                .paygate
                .notify(payment_id, &self.url("/webhooks/paygate"), None)
                .await
                .map_err(DemoError::Http);
        }
        self.unzer
            .send_webhook(&self.webhook_url(), event, payment_id)
            .await
            .map_err(DemoError::Http)
    }

    /// The order's state in pixi and at Unzer, and its open problems in paybridge.
    pub async fn observe(
        &self,
        order: i64,
        payment_id: Option<&str>,
    ) -> Result<EndState, DemoError> {
        let erp = match self.pixi.order(order) {
            None => ErpState {
                status: "MISSING".into(),
                locked: false,
                commented: false,
                bookings: Vec::new(),
                transfer: None,
            },
            Some(o) => {
                let transfer = self.pixi.transfer_fields(order).and_then(|b| {
                    let any = b.holder.is_some()
                        || b.iban.is_some()
                        || b.bic.is_some()
                        || b.bank_name.is_some();
                    any.then(|| Transfer {
                        holder: b.holder.unwrap_or_default(),
                        iban: b.iban.unwrap_or_default(),
                        bic: b.bic.unwrap_or_default(),
                        bank: b.bank_name.unwrap_or_default(),
                    })
                });
                ErpState {
                    status: o.status,
                    locked: o.shipping_lock,
                    commented: !self.pixi.comments(order).is_empty(),
                    bookings: self
                        .pixi
                        .bookings_for_order(order)
                        .into_iter()
                        .map(|b| Booking {
                            event: b.event_id,
                            amount: b.amount,
                        })
                        .collect(),
                    transfer,
                }
            }
        };
        let psp = match payment_id {
            None => None,
            Some(pid) => Some(self.psp_state(pid)?),
        };
        let key = self.order_key(order);
        let base = |f: &Flag| f.code.split(':').next().unwrap_or_default().to_string();
        let (mut problems, mut hints): (Vec<String>, Vec<String>) =
            match Repo::new(self.app.store.as_ref())
                .order(&key, self.now())
                .await?
            {
                None => (Vec::new(), Vec::new()),
                Some(r) => (
                    r.open_errors().map(base).collect(),
                    r.flags
                        .iter()
                        .filter(|f| f.severity == Severity::Hint)
                        .map(base)
                        .collect(),
                ),
            };
        for list in [&mut problems, &mut hints] {
            list.sort();
            list.dedup();
        }
        Ok(EndState {
            erp,
            psp,
            problems,
            hints,
        })
    }

    /// The payment as its PSP shows it.
    pub fn psp_state(&self, payment_id: &str) -> Result<PspState, DemoError> {
        if let Some(p) = self.paygate.payment(payment_id) {
            return Ok(paygate_state(&p));
        }
        let json = self
            .unzer
            .payment_json(payment_id)
            .ok_or_else(|| DemoError::Scenario(format!("Unzer has no payment {payment_id}")))?;
        let field = |name: &str| -> Result<Decimal, DemoError> {
            let text = json["amount"][name].as_str().ok_or_else(|| {
                DemoError::Scenario(format!("payment {payment_id}: no amount.{name}"))
            })?;
            parse_amount(text, name)
        };
        let txs = self.unzer.transactions(payment_id);
        let reversed = txs
            .iter()
            .filter(|t| t.kind == "cancel-authorize" && t.status == "success")
            .map(|t| t.amount)
            .sum::<Decimal>();
        Ok(PspState {
            charged: field("charged")?,
            reversed,
            refunded: field("canceled")?,
            remaining: field("remaining")?,
            shipped: txs
                .iter()
                .any(|t| t.kind == "shipment" && t.status == "success"),
        })
    }

    /// The link of the newest payment-link mail for `order`.
    pub fn link_of(&self, order: i64) -> Result<String, DemoError> {
        self.links
            .payment_links()
            .into_iter()
            .rev()
            .find(|m| m.order_id == order.to_string())
            .map(|m| m.url)
            .ok_or_else(|| {
                DemoError::Scenario(format!("order {order}: no payment link was e-mailed"))
            })
    }

    fn expect_200(&self, order: i64, status: u16) -> Result<(), DemoError> {
        if status == 200 {
            return Ok(());
        }
        Err(DemoError::Scenario(format!(
            "order {order}: the webhook was answered with HTTP {status}"
        )))
    }

    /// The state of a running scenario's order.
    pub async fn observe_run(&self, run: &Running) -> Result<EndState, DemoError> {
        self.observe(run.scenario.order, run.payment_id.as_deref())
            .await
    }

    /// Runs scenarios together: every payment first, then phase by phase (each scenario's
    /// steps of that phase, then one settle), then observes each order.
    pub async fn run(&self, scenarios: &[Scenario]) -> Result<Vec<Outcome>, DemoError> {
        let mut runs: Vec<Running> = scenarios.iter().map(|s| self.prepare(s)).collect();
        let phases = scenarios.iter().map(|s| s.phases.len()).max().unwrap_or(0);
        for phase in 0..phases {
            for run in runs.iter_mut() {
                let steps = run.scenario.phases.get(phase).cloned().unwrap_or_default();
                for step in &steps {
                    self.apply(run, step).await?;
                }
            }
            self.settle().await?;
        }
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let actual = self.observe_run(&run).await?;
            out.push(Outcome {
                expected: run.expected(),
                payment_id: run.payment_id.clone(),
                scenario: run.scenario,
                actual,
            });
        }
        Ok(out)
    }

    /// Stops the listener; the simulators and the temporary directory go with `self`.
    pub async fn shutdown(mut self) -> Result<(), DemoError> {
        match self.http.take() {
            Some(h) => h
                .shutdown()
                .await
                .map_err(|e| DemoError::Http(e.to_string())),
            None => Ok(()),
        }
    }
}

// ------------------------------------------------------------------------------- the demo

/// Totals of a demo run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSummary {
    pub orders: usize,
    pub ok: usize,
    pub pixi_calls: usize,
    pub unzer_calls: usize,
    pub paygate_calls: usize,
    pub elapsed: Duration,
}

impl DemoSummary {
    pub fn all_ok(&self) -> bool {
        self.ok == self.orders
    }
}

/// The table `paybridge demo` prints: one line per order, columns aligned.
pub fn table(outcomes: &[Outcome]) -> Vec<String> {
    let rows: Vec<[String; 6]> = outcomes
        .iter()
        .map(|o| {
            let expected = o.expected.to_string();
            let actual = if o.ok() {
                "same".to_string()
            } else {
                o.actual.to_string()
            };
            [
                o.scenario.order.to_string(),
                o.scenario.flow.to_string(),
                o.scenario.method.label().to_string(),
                expected,
                actual,
                if o.ok() { "OK" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    let header = [
        "order".to_string(),
        "flow".to_string(),
        "mode".to_string(),
        "expected".to_string(),
        "actual".to_string(),
        String::new(),
    ];
    let mut width = [0usize; 6];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 6], arrow: &str| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$} {arrow} {:<w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
        )
        .trim_end()
        .to_string()
    };
    std::iter::once(line(&header, " "))
        .chain(rows.iter().map(|r| line(r, "→")))
        .collect()
}

/// `paybridge demo`: runs [`catalogue`] against the simulators and writes one line per order
/// and a summary to `out`.
pub async fn run_demo(out: &mut dyn Write) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let h = Harness::start().await?;
    let io = |e: std::io::Error| DemoError::Io(e);
    writeln!(
        out,
        "paybridge demo: pixi simulator {}, Unzer simulator {}, paybridge webhooks {}",
        h.pixi.url(),
        h.unzer.base_url(),
        h.webhook_url()
    )
    .map_err(io)?;
    let scenarios = catalogue();
    writeln!(
        out,
        "{} scripted orders (behaviour.md §3.1–§3.5, §3.9) through pixi SOAP ↔ paybridge ↔ Unzer REST on loopback\n",
        scenarios.len()
    )
    .map_err(io)?;
    let outcomes = h.run(&scenarios).await?;
    for l in table(&outcomes) {
        writeln!(out, "{l}").map_err(io)?;
    }
    let summary = DemoSummary {
        orders: outcomes.len(),
        ok: outcomes.iter().filter(|o| o.ok()).count(),
        pixi_calls: h.pixi.request_count(),
        unzer_calls: h.unzer.requests().len(),
        paygate_calls: h.paygate.calls().len(),
        elapsed: started.elapsed(),
    };
    writeln!(
        out,
        "\n{} orders: {} OK, {} FAIL — {} pixi SOAP calls, {} Unzer API calls, {} Paygate calls, {:.1} s",
        summary.orders,
        summary.ok,
        summary.orders - summary.ok,
        summary.pixi_calls,
        summary.unzer_calls,
        summary.paygate_calls,
        summary.elapsed.as_secs_f64()
    )
    .map_err(io)?;
    h.shutdown().await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paybridge_core::config::Config;
    use std::collections::HashSet;

    #[test]
    fn catalogue_keys_and_orders_are_unique_and_cover_every_flow() {
        let all = catalogue();
        let keys: HashSet<_> = all.iter().map(|s| s.key).collect();
        let orders: HashSet<_> = all.iter().map(|s| s.order).collect();
        assert_eq!(keys.len(), all.len());
        assert_eq!(orders.len(), all.len());
        for section in ["3.1", "3.2", "3.3", "3.4", "3.5", "3.9"] {
            assert!(all.iter().any(|s| s.flow.starts_with(section)), "{section}");
        }
        for m in Method::ALL {
            assert!(all.iter().any(|s| s.method == m), "{m:?} has a scenario");
        }
        for (a, b) in [
            ("3.1-release-expert", "3.1-release-standard"),
            ("3.4-whole-expert", "3.4-whole-standard"),
            ("3.4-lines-expert", "3.4-lines-standard"),
            ("3.5-expert", "3.5-standard"),
        ] {
            assert!(
                keys.contains(a) && keys.contains(b),
                "card flows in both modes"
            );
        }
        assert!(scenarios(&["nope"]).is_err());
    }

    #[test]
    fn the_demo_configuration_is_valid_and_pixi_event_codes_fit() {
        let text = config_toml(
            "http://127.0.0.1:1/soap/",
            "u",
            "pw",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        );
        let cfg = Config::parse(&text, "demo.toml").expect("valid");
        assert_eq!(cfg.methods.len(), Method::ALL.len());
        for m in &cfg.methods {
            assert!(m.invoice_event.chars().count() <= 3, "{}", m.invoice_event);
            assert!(m.return_event.chars().count() <= 3, "{}", m.return_event);
        }
        // One Unzer key pair per Unzer config; the Paygate configs share one merchant account
        // (MerchantID), as the methods of one real Paygate account do.
        let public: HashSet<_> = cfg.methods.iter().map(|m| &m.account.public_key).collect();
        let unzer = Method::ALL.iter().filter(|m| !m.is_paygate()).count();
        assert_eq!(
            public.len(),
            unzer + 1,
            "one key pair per Unzer config, one merchant"
        );
        assert!(
            cfg.methods
                .iter()
                .filter(|m| m.psp == paybridge_core::config::PspKind::Paygate)
                .all(|m| m.account.public_key == PAYGATE_MERCHANT)
        );
    }

    #[test]
    fn end_states_print_compactly_and_compare_to_the_cent() {
        let e = Expect::closed()
            .charged(6000)
            .reversed(4000)
            .booked("ZE", 6000)
            .end_state(None);
        assert_eq!(
            e.to_string(),
            "CLOSED charged 60.00 reversed 40.00 booked ZE 60.00"
        );
        let mut other = e.clone();
        if let Some(p) = other.psp.as_mut() {
            p.charged = Decimal::new(600_000, 4); // 60.0000 as Unzer prints it
        }
        assert_eq!(e, other, "scale does not matter");
        if let Some(p) = other.psp.as_mut() {
            p.charged = Decimal::new(6001, 2);
        }
        assert_ne!(e, other, "a cent does");
        assert_eq!(money_text(Decimal::new(-30_000, 4)), "-3.00");
        let hinted = Expect::hold()
            .no_payment()
            .problem("pending_too_long")
            .hint("pending")
            .end_state(None);
        assert_eq!(
            hinted.to_string(),
            "HOLD no-payment no-booking problem pending_too_long hint pending"
        );
    }

    #[tokio::test]
    async fn a_wrong_expectation_is_a_fail_line_with_the_actual_state() {
        let h = Harness::start().await.expect("harness");
        let right = catalogue()
            .into_iter()
            .find(|s| s.key == "3.4-lines-expert")
            .expect("scenario");
        let mut wrong = right.clone();
        wrong.order += 1;
        wrong.expect = Expect::closed().charged(6000).booked("ZE", 6000); // reversal forgotten
        let out = h.run(&[right, wrong]).await.expect("runs");
        assert!(out[0].ok());
        assert!(!out[1].ok());
        let lines = table(&out);
        assert_eq!(lines.len(), 3, "a header and one line per order");
        assert!(
            lines[1].contains("→ same") && lines[1].ends_with(" OK"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with("FAIL"), "{}", lines[2]);
        assert!(lines[2].contains("reversed 40.00"), "{}", lines[2]);
        h.shutdown().await.expect("stops");
    }
}
