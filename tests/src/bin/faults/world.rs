//! One lifecycle: builds the world (SQLite store and queue in memory, or with `--store dynamodb`
//! a fresh DynamoDB table for the store; memory ERP and PSP, the fault decorators, a simulated
//! clock), plays the drawn document history against it while pollers, workers and webhook
//! handlers run and die under the fault stream, then lets the system run without faults until
//! it is quiescent, and hands the final state to [`check`].
//!
//! [`check`]: crate::check

use crate::check::{self, Final, Findings};
use crate::rng::{self, Rng};
use crate::scenario::{Action, Family, OrderDraw, Scenario};
use crate::sim::{FaultyErp, FaultyNotifier, FaultyPsp, FaultyQueue, FaultyStore, Sim};
use chrono::{DateTime, Duration, Utc};
use paybridge_core::app::{App, Settings};
use paybridge_core::config::{Config, Mode};
use paybridge_core::erp::Erp;
use paybridge_core::erp::memory::{MemoryErp, line};
use paybridge_core::ledger::{OpStatus, OrderKey};
use paybridge_core::model::{
    BankDetails, CreditNote, ErpOrder, Invoice, LineStatus, OrderStatus, PaymentMethod,
    PaymentState, PspPayment, PspTransaction, TxKind, TxStatus,
};
use paybridge_core::notify::Notifier;
use paybridge_core::notify::recording::RecordingNotifier;
use paybridge_core::psp::Psp;
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::queue::Queue;
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::Store;
use paybridge_core::store::dynamo::DynamoStore;
use paybridge_core::store::repo::Repo;
use paybridge_core::store::sqlite::SqliteStore;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub const TENANT: &str = "acme";
pub const CONN: &str = "main";
pub const ORDER_ID: &str = "1001";
pub const PAYMENT_ID: &str = "s-pay-1";
pub const PUBLIC_KEY: &str = "s-pub-test";

/// How long a received message stays invisible (`App::work_once` uses 2 × the op lease).
const VISIBILITY: std::time::Duration = std::time::Duration::from_secs(120);
/// The poller's schedule (EventBridge Scheduler, one minute).
const POLL_EVERY: i64 = 60;
/// Receive rounds per worker run before the harness calls it a livelock.
const MAX_ROUNDS: usize = 400;

/// Options that change what a lifecycle does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    pub hazards: bool,
    /// Append the final state (ledger, order history, PSP transactions, ERP writes) to the
    /// trace.
    pub detail: bool,
}

/// Where a lifecycle keeps its store. The queue is always SQLite in memory: SQS cannot follow the
/// simulated clock (its delays and visibility timeouts run on the wall clock).
#[derive(Clone)]
pub enum Backend {
    /// `SqliteStore::open_in_memory`, one per lifecycle.
    Sqlite,
    /// `DynamoStore` on a fresh table per lifecycle, through this client (e.g. on moto).
    Dynamo(aws_sdk_dynamodb::Client),
}

impl Backend {
    /// The store of lifecycle `(seed, index)`, and the DynamoDB table to delete afterwards.
    async fn open(&self, seed: u64, index: u64) -> (Arc<dyn Store>, Option<String>) {
        match self {
            Backend::Sqlite => (
                Arc::new(SqliteStore::open_in_memory().expect("in-memory store")),
                None,
            ),
            Backend::Dynamo(client) => {
                // One table per lifecycle and process, so runs sharing one moto never meet; a
                // table left by an earlier process with the same id (it died mid-run) is dropped
                // first, since `create_table` would happily reuse it, data and all.
                let table = format!("faults-{seed}-{index}-p{}", std::process::id());
                drop_table(client, &table).await;
                DynamoStore::create_table(client, &table)
                    .await
                    .unwrap_or_else(|e| panic!("creating DynamoDB table {table}: {e}"));
                (
                    Arc::new(DynamoStore::new(client.clone(), &table)),
                    Some(table),
                )
            }
        }
    }

    /// Deletes the lifecycle's table (keeps moto small); `None` (SQLite): nothing to do.
    async fn close(&self, table: Option<String>) {
        if let (Backend::Dynamo(client), Some(table)) = (self, table) {
            drop_table(client, &table).await;
        }
    }
}

/// A DynamoDB client on `endpoint` (moto or DynamoDB Local), built like the moto tests'
/// (`shared/tests/aws_moto.rs`): region eu-central-1, dummy credentials.
pub async fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let sdk = paybridge_core::aws::sdk_defaults()
        .region(aws_config::Region::new("eu-central-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "paybridge-faults",
        ))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// Deletes `table` if it exists; other errors are reported on stderr, not fatal (the lifecycle's
/// result does not depend on it).
async fn drop_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    if let Err(e) = client.delete_table().table_name(table).send().await {
        let missing = e
            .as_service_error()
            .is_some_and(|s| s.is_resource_not_found_exception());
        if !missing {
            eprintln!(
                "warning: deleting DynamoDB table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            );
        }
    }
}

/// The decorated adapters and the config: everything an `App` is made of.
#[derive(Clone)]
pub struct Parts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub erp: Arc<dyn Erp>,
    pub psp: Arc<dyn Psp>,
    pub notifier: Arc<dyn Notifier>,
    /// The queue itself, for the duplicates SQS makes on its own.
    pub raw_queue: SqliteQueue,
}

impl Parts {
    /// A process: the product's `App` over the decorated adapters.
    pub fn app(&self, holder: &str) -> App {
        let mut erps: HashMap<String, Arc<dyn Erp>> = HashMap::new();
        erps.insert(CONN.into(), Arc::clone(&self.erp));
        App {
            config: Arc::clone(&self.config),
            store: Arc::clone(&self.store),
            queue: Arc::clone(&self.queue),
            erps,
            psp: Arc::clone(&self.psp),
            notifier: Arc::clone(&self.notifier),
            settings: Settings::default(),
            holder: holder.to_string(),
        }
    }
}

/// A slow call: advance the clock and, unless already nested, let another worker run meanwhile
/// (a duplicate delivery of the current job, a worker batch, or a poll).
pub fn pause(sim: &Arc<Sim>, secs: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        sim.advance(secs);
        let Some((job, activity)) = sim.enter_nested() else {
            return;
        };
        if let Some(parts) = sim.parts() {
            match (job, activity) {
                (Some(job), 0..=49) => {
                    let name = sim.begin("dup-worker");
                    sim.start_job(Some(job.clone()));
                    let app = parts.app(&name);
                    let _ = app.run_job(&job, sim.now()).await;
                    sim.end();
                }
                (_, 0..=84) => {
                    work(sim, &parts, "nested-worker").await;
                }
                _ => {
                    poll(sim, &parts, "nested-poller").await;
                }
            }
        }
        sim.leave_nested();
    })
}

/// A worker process: receives batches and handles them until nothing is visible. Returns the
/// number of deliveries handled.
pub async fn work(sim: &Arc<Sim>, parts: &Parts, prefix: &str) -> usize {
    let name = sim.begin(prefix);
    let app = parts.app(&name);
    let mut handled = 0;
    'rounds: for round in 0.. {
        if round == MAX_ROUNDS {
            sim.note(format!(
                "worker {name}: still busy after {MAX_ROUNDS} receive rounds (livelock?)"
            ));
            break;
        }
        let now = sim.now();
        let batch = if sim.faults_on() {
            sim.range(1, 5) as usize
        } else {
            10
        };
        let mut ds = match parts
            .queue
            .receive(batch, VISIBILITY, now.timestamp_millis())
            .await
        {
            Ok(ds) => ds,
            Err(_) => break,
        };
        if ds.is_empty() {
            break;
        }
        if sim.faults_on() {
            let (reorder, dup) = {
                let st = sim.state();
                (st.profile.reorder, st.profile.dup_delivery)
            };
            if reorder {
                sim.shuffle(&mut ds);
            }
            for d in &ds {
                if sim.chance(dup, 1000) {
                    // SQS delivers a message twice (at-least-once).
                    let delay = std::time::Duration::from_secs(sim.range(0, 180) as u64);
                    let _ = parts
                        .raw_queue
                        .send(&d.job, delay, now.timestamp_millis())
                        .await;
                }
            }
        }
        for d in ds {
            if sim.dead() {
                break 'rounds;
            }
            sim.start_job(Some(d.job.clone()));
            let _ = app.handle_delivery(&d, sim.now()).await;
            handled += 1;
        }
        if sim.dead() {
            break;
        }
    }
    sim.end();
    handled
}

/// What one poll did, as far as the harness cares.
#[derive(Debug, Default, Clone, Copy)]
pub struct PollSeen {
    /// Planned or swept something (or failed).
    pub busy: bool,
    /// Planned new operations.
    pub planned: bool,
    /// Read the ERP (not held back by quiet hours or another poller's lease, no error).
    pub read: bool,
    pub died: bool,
}

/// A poller process (its lease holder name is the process name, so a dead poller's lease must
/// expire before the next one polls).
pub async fn poll(sim: &Arc<Sim>, parts: &Parts, prefix: &str) -> PollSeen {
    let name = sim.begin(prefix);
    let app = parts.app(&name);
    let r = app.poll_cycle(sim.now()).await;
    let died = sim.end();
    PollSeen {
        busy: r.as_ref().map_or(true, |r| {
            r.ops_planned > 0 || r.swept_ops > 0 || r.swept_events > 0 || r.swept_rechecks > 0
        }),
        planned: r.as_ref().is_ok_and(|r| r.ops_planned > 0),
        read: !died
            && r.as_ref()
                .is_ok_and(|r| r.held_lease == 0 && r.held_quiet_hours == 0),
        died,
    }
}

fn hook_body(event: &str) -> Vec<u8> {
    serde_json::json!({
        "event": event,
        "publicKey": PUBLIC_KEY,
        "retrieveUrl": format!("https://sbx-api.unzer.com/v1/payments/{PAYMENT_ID}"),
        "paymentId": PAYMENT_ID,
    })
    .to_string()
    .into_bytes()
}

fn config_for(sc: &Scenario) -> Config {
    let o = &sc.order;
    let validity = sc
        .auth
        .config_days
        .map(|d| format!("authorization_validity_days = {d}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[tenant]
id = "{TENANT}"
timezone = "Europe/Berlin"
quiet_hours = "{quiet}"

[[erp]]
id = "{CONN}"
kind = "memory"
fixtures = "unused.json"

[[method]]
erp = "{CONN}"
mandant = "01"
erp_method = "UNZER"
psp = "unzer"
mode = "{mode}"
invoice_event = "ZE"
return_event = "RE"
rounding_tolerance = {tol}
public_key = "{PUBLIC_KEY}"
private_key = "plain:s-priv-test"
{validity}"#,
        quiet = if o.quiet { "00:00-04:00" } else { "off" },
        mode = match o.mode {
            Mode::Standard => "standard",
            Mode::Expert => "expert",
            Mode::Link => "link",
        },
        tol = o.tolerance,
    );
    Config::parse(&text, "faults.toml").expect("the harness config parses")
}

fn initial_payment(sc: &Scenario) -> PspPayment {
    use Family::*;
    let o = &sc.order;
    let amount = o.money(o.auth_minor);
    let auth = if o.auth_pending {
        TxStatus::Pending
    } else {
        TxStatus::Success
    };
    let (method, kind, status, state) = match o.family {
        CardStandard | CardExpert => (
            PaymentMethod::Card,
            TxKind::Authorize,
            auth,
            PaymentState::Pending,
        ),
        CardCharged => (
            PaymentMethod::Card,
            TxKind::Charge,
            TxStatus::Success,
            PaymentState::Completed,
        ),
        Sofort => (
            PaymentMethod::Sofort,
            TxKind::Charge,
            TxStatus::Success,
            PaymentState::Completed,
        ),
        Prepayment => (
            PaymentMethod::Prepayment,
            TxKind::Charge,
            TxStatus::Pending,
            PaymentState::Pending,
        ),
        PaylaterInvoice => (
            PaymentMethod::PaylaterInvoice,
            TxKind::Authorize,
            auth,
            PaymentState::Pending,
        ),
        PaylaterDebit => (
            PaymentMethod::PaylaterDirectDebit,
            TxKind::Authorize,
            auth,
            PaymentState::Pending,
        ),
        InvoiceSecured => (
            PaymentMethod::InvoiceSecured,
            TxKind::Charge,
            TxStatus::Pending,
            PaymentState::Pending,
        ),
    };
    PspPayment {
        payment_id: PAYMENT_ID.into(),
        state,
        method,
        currency: o.currency,
        transactions: vec![PspTransaction {
            at: sc.auth.at.map(|a| o.start + Duration::seconds(a)),
            id: "s-init-1".into(),
            kind,
            status,
            amount,
            reference: None,
        }],
        bank_details: (o.family == Prepayment).then(|| BankDetails {
            holder: "Merchant GmbH".into(),
            iban: "DE89370400440532013000".into(),
            bic: "COBADEFFXXX".into(),
            descriptor: "4711.0815.1234".into(),
        }),
        totals_only: false,
    }
}

fn erp_order(o: &OrderDraw) -> ErpOrder {
    ErpOrder {
        order_id: ORDER_ID.into(),
        mandant: "01".into(),
        shop_order_no: format!("S-{ORDER_ID}"),
        psp_payment_id: Some(PAYMENT_ID.into()),
        payment_method: "UNZER".into(),
        status: OrderStatus::Hold,
        total: o.money(o.total_minor()),
        lines: o
            .lines
            .iter()
            .enumerate()
            .map(|(i, m)| line(&format!("L{}", i + 1), LineStatus::Open, o.money(*m)))
            .collect(),
        shipping_lock: false,
        invoices: vec![],
        credit_notes: vec![],
        customer_key: None,
    }
}

/// The result of one lifecycle.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub index: u64,
    pub findings: Findings,
    /// Order, faults profile, history (one line per step), fired faults, notes.
    pub trace: Vec<String>,
    /// Fingerprint of the final state (for determinism checks).
    pub digest: u64,
    /// Adapter calls made (all processes, both phases).
    pub calls: u64,
    /// What was drawn, for the summary's counts (`auth-age fresh`, `hands-off drawn`, …).
    pub draws: Vec<String>,
}

struct World {
    sim: Arc<Sim>,
    parts: Parts,
    sc: Scenario,
    erp: MemoryErp,
    psp: MemoryPsp,
    notes: RecordingNotifier,
    /// The store itself (SQLite or DynamoDB), read by the harness without faults.
    store: Arc<dyn Store>,
    queue: SqliteQueue,
    history: Vec<String>,
    poller: u64,
    app_errors: Vec<String>,
    /// Loop iterations, polls, worker runs (for the cost breakdown in `--only`).
    stats: [u64; 3],
    /// Operator switches due: (when, off, attempt).
    switches: Vec<(DateTime<Utc>, bool, u32)>,
}

/// Runs lifecycle `index` of run `seed`, with its store on `backend`.
pub async fn run(seed: u64, index: u64, opts: Opts, backend: Backend) -> Outcome {
    let mut srng = Rng::for_lifecycle(seed, index, rng::STREAM_SCENARIO);
    let mut frng = Rng::for_lifecycle(seed, index, rng::STREAM_FAULTS);
    let mut orng = Rng::for_lifecycle(seed, index, rng::STREAM_OPERATOR);
    let sc = Scenario::draw(&mut srng, &mut frng, &mut orng, opts.hazards);
    let (mut out, money, windows) =
        play(seed, index, sc.clone(), frng.clone(), opts, &backend).await;
    // Put back after a switch, without faults: the twin without the switches (same order,
    // history and draws) must end in the same money state, unless the authorization expired
    // while the order was out of automation (then the capture it missed cannot happen).
    let put_back = !windows.is_empty() && windows.iter().all(|(_, until)| until.is_some());
    if put_back && sc.faults.level == "none" && out.findings.clean() {
        let mut twin = sc.clone();
        twin.switches.clear();
        let twin_opts = Opts {
            detail: false,
            ..opts
        };
        let (t, twin_money, _) = play(seed, index, twin, frng, twin_opts, &backend).await;
        let expiry = sc
            .auth
            .expires()
            .map(|e| sc.order.start + Duration::seconds(e));
        let expired_meanwhile = expiry.is_some_and(|e| {
            windows.iter().any(|(since, until)| {
                *since <= e + Duration::hours(1)
                    && until.is_none_or(|u| e <= u + Duration::hours(1))
            })
        });
        if !t.findings.clean() {
            out.findings
                .lost
                .push("the twin without hands-off switches is not clean".into());
        } else if twin_money == money {
            out.draws.push("hands-off twin same money".into());
        } else if twin_money.0 == money.0 {
            // E.g. cancelled while out of automation and paid meanwhile: refunded instead of
            // reversed; the customer pays the same.
            out.draws.push("hands-off twin same money".into());
            out.draws
                .push("hands-off twin same money, other path".into());
            out.trace.push(format!(
                "twin without switches: {} (with them: {})",
                twin_money.1, money.1
            ));
        } else if expired_meanwhile {
            out.draws
                .push("hands-off twin differs (expired while out of automation)".into());
            out.trace.push(format!(
                "twin without switches: {} {} (with them: {} {}); the authorization expired while out of automation",
                twin_money.0, twin_money.1, money.0, money.1
            ));
        } else {
            out.draws.push("hands-off twin differs".into());
            out.findings.hands_off.push(format!(
                "put back, the order ends with {} ({}); without the switches with {} ({})",
                money.0, money.1, twin_money.0, twin_money.1
            ));
        }
    }
    out
}

/// Plays one drawn lifecycle: the outcome, its final money state (PSP position and ERP
/// bookings) and its hands-off windows.
async fn play(
    seed: u64,
    index: u64,
    sc: Scenario,
    frng: Rng,
    opts: Opts,
    backend: &Backend,
) -> (
    Outcome,
    (String, String),
    Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
) {
    let erp = MemoryErp::new();
    let psp = MemoryPsp::new();
    let notes = RecordingNotifier::default();
    let (store, table) = backend.open(seed, index).await;
    let queue = SqliteQueue::open_in_memory(sc.order.max_receives).expect("in-memory queue");
    psp.put(initial_payment(&sc));
    let sim = Arc::new(Sim::new(sc.order.start, frng, sc.faults.clone()));
    sim.state().expiry = sc
        .auth
        .expires()
        .map(|e| sc.order.start + Duration::seconds(e));
    let parts = Parts {
        config: Arc::new(config_for(&sc)),
        store: Arc::new(FaultyStore {
            sim: Arc::clone(&sim),
            inner: Arc::clone(&store),
        }),
        queue: Arc::new(FaultyQueue {
            sim: Arc::clone(&sim),
            inner: queue.clone(),
        }),
        erp: Arc::new(FaultyErp {
            sim: Arc::clone(&sim),
            inner: erp.clone(),
            order_id: ORDER_ID.into(),
            pixi_listing: sc.order.pixi_listing,
        }),
        psp: Arc::new(FaultyPsp {
            sim: Arc::clone(&sim),
            inner: psp.clone(),
        }),
        notifier: Arc::new(FaultyNotifier {
            sim: Arc::clone(&sim),
            inner: notes.clone(),
        }),
        raw_queue: queue.clone(),
    };
    sim.set_parts(Some(parts.clone()));
    let mut w = World {
        sim: Arc::clone(&sim),
        parts,
        sc,
        erp,
        psp,
        notes,
        store,
        queue,
        history: Vec::new(),
        poller: 0,
        app_errors: Vec::new(),
        stats: [0; 3],
        switches: Vec::new(),
    };
    w.fault_phase().await;
    let quiesced = w.quiesce().await;
    let (findings, digest) = w.check(quiesced).await;
    let money = w.money();
    let detail = if opts.detail {
        w.detail().await
    } else {
        Vec::new()
    };
    // Break the Sim → Parts → decorators → Sim cycle.
    sim.set_parts(None);
    backend.close(table).await;

    let mut trace = vec![
        w.sc.order.to_string(),
        w.sc.faults.to_string(),
        w.sc.auth.to_string(),
    ];
    trace.extend(w.history.iter().cloned());
    {
        let st = sim.state();
        let rel = |t: DateTime<Utc>| (t - w.sc.order.start).num_seconds();
        for (since, until) in &st.windows {
            trace.push(format!(
                "out of automation (committed) from t+{}s {}",
                rel(*since),
                until.map_or("to the end".to_string(), |u| format!("to t+{}s", rel(u)))
            ));
        }
        trace.extend(st.fired.iter().cloned());
    }
    trace.extend(w.app_errors.iter().cloned());
    trace.extend(detail);
    let calls = sim.state().calls;
    let mut draws = vec![format!("auth-age {}", w.sc.auth.class.label())];
    {
        let st = sim.state();
        if !w.sc.switches.is_empty() {
            draws.push("hands-off drawn".into());
            let windows = st.windows.len();
            if windows > 0 {
                draws.push("hands-off effective".into());
                if st.windows.iter().any(|(_, until)| until.is_none()) {
                    draws.push("hands-off left out at the end".into());
                } else {
                    draws.push("hands-off put back".into());
                }
                if windows > 1 {
                    draws.push("hands-off twice".into());
                }
            }
        }
    }
    let windows = sim.state().windows.clone();
    (
        Outcome {
            index,
            findings,
            trace,
            digest,
            calls,
            draws,
        },
        money,
        windows,
    )
}

impl World {
    /// The final money state: what the customer paid in the end (charged − refunded) and the
    /// ERP's bookings, sorted; then the PSP position (how it got there).
    fn money(&self) -> (String, String) {
        let pos = self.psp.payment(PAYMENT_ID).and_then(|p| p.position().ok());
        let net = pos
            .as_ref()
            .and_then(|p| p.charged.checked_sub(p.refunded).ok())
            .map(|m| m.to_string())
            .unwrap_or_default();
        let raw = pos
            .map(|p| {
                format!(
                    "authorized={} charged={} reversed={} refunded={}",
                    p.authorized, p.charged, p.reversed, p.refunded
                )
            })
            .unwrap_or_default();
        let mut bookings: Vec<String> = self
            .erp
            .writes()
            .iter()
            .filter(|(_, _, w)| {
                matches!(
                    w,
                    paybridge_core::ledger::ErpWrite::MarkInvoiceCaptured { .. }
                        | paybridge_core::ledger::ErpWrite::ManualBooking { .. }
                )
            })
            .map(|(_, _, w)| crate::sim::write_label(w))
            .collect();
        bookings.sort();
        (
            format!("paid={net} bookings=[{}]", bookings.join(", ")),
            raw,
        )
    }

    fn key(&self) -> OrderKey {
        OrderKey::new(TENANT, CONN, ORDER_ID)
    }

    fn step_at(&self, i: usize) -> DateTime<Utc> {
        self.sc.order.start + Duration::seconds(self.sc.steps[i].at)
    }

    async fn poll(&mut self) -> PollSeen {
        self.stats[1] += 1;
        let seen = poll(&self.sim, &self.parts, &format!("poller{}", self.poller)).await;
        if seen.died {
            // A new poller instance; the dead one's lease must expire first.
            self.poller += 1;
        }
        seen
    }

    /// Delivers the webhooks that are due; a failed or interrupted delivery is sent again
    /// later, as Unzer does.
    async fn deliver_hooks(&mut self, all: bool) -> bool {
        let now = self.sim.now();
        let due: Vec<_> = {
            let mut st = self.sim.state();
            let mut due = Vec::new();
            let mut keep = Vec::new();
            for h in st.hooks.drain(..) {
                if all || h.at <= now {
                    due.push(h);
                } else {
                    keep.push(h);
                }
            }
            st.hooks = keep;
            due.sort_by_key(|h| h.at);
            due
        };
        let any = !due.is_empty();
        for h in due {
            let name = self.sim.begin("webhook");
            let app = self.parts.app(&name);
            let now = self.sim.now();
            let r = app.accept_webhook("unzer", &hook_body(&h.event), now).await;
            let died = self.sim.end();
            if r.is_err() || died {
                let backoff = (60i64 << h.attempt.min(6)).min(3600);
                let mut st = self.sim.state();
                st.hooks.push(crate::sim::PendingHook {
                    at: now + Duration::seconds(backoff),
                    event: h.event,
                    attempt: h.attempt + 1,
                });
            }
        }
        any
    }

    /// The operator's switches that are due (`all`: every one left): `set_hands_off` in an
    /// operator process, under the faults like any process; one that fails (error, process
    /// death) is clicked again a minute later. True if one ran.
    async fn operator(&mut self, all: bool) -> bool {
        let mut any = false;
        // In order: a switch waits for the one before it (a retried "off" before its "on").
        while let Some(&(at, off, attempt)) = self.switches.first() {
            if !all && at > self.sim.now() {
                break;
            }
            any = true;
            let name = self.sim.begin("operator");
            self.sim.begin_switch(off);
            let app = self.parts.app(&name);
            let now = self.sim.now();
            let r = app.set_hands_off(&self.key(), off, now).await;
            let died = self.sim.end();
            self.sim.end_switch();
            let rel = (now - self.sc.order.start).num_seconds();
            let what = if off { "hands-off" } else { "hands-on" };
            let result = match (&r, died) {
                (_, true) => "operator process died".to_string(),
                (Ok(true), false) => "switched".to_string(),
                (Ok(false), false) => "no effect (order unknown or already so)".to_string(),
                (Err(e), false) => format!("failed: {e}"),
            };
            self.history.push(format!(
                "operator t+{rel}s {what} (attempt {}) → {result}",
                attempt + 1
            ));
            if (r.is_err() || died) && attempt < 20 {
                // Clicked again a minute later.
                self.switches[0] = (self.sim.now() + Duration::seconds(60), off, attempt + 1);
                if !all {
                    break;
                }
            } else {
                self.switches.remove(0);
            }
        }
        any
    }

    /// PSP calls that timed out but are applied by the PSP now (`--hazards`).
    async fn apply_late(&mut self, all: bool) -> bool {
        let now = self.sim.now();
        let due: Vec<_> = {
            let mut st = self.sim.state();
            let (due, keep): (Vec<_>, Vec<_>) = st.late.drain(..).partition(|l| all || l.at <= now);
            st.late = keep;
            due
        };
        let any = !due.is_empty();
        for l in due {
            let out = self
                .psp
                .execute(&l.account, &l.payment, &l.call, &l.reference)
                .await;
            self.sim.note(format!(
                "late application at the PSP of {:?} ref {}: {:?}",
                l.call, l.reference, out
            ));
        }
        any
    }

    fn resolve(&mut self, i: usize) -> String {
        let step = self.sc.steps[i].clone();
        let o = self.erp.order(ORDER_ID);
        let cur = self.sc.order.currency;
        let money = |m: i64| self.sc.order.money(m);
        match &step.action {
            Action::Import => {
                if o.is_some() {
                    return "already imported".into();
                }
                self.erp.upsert(erp_order(&self.sc.order));
                "imported".into()
            }
            Action::Ship {
                lines,
                discount_pct,
                round_up,
                ignore_lock,
            } => {
                let Some(o) = o else {
                    return "skipped: not imported".into();
                };
                if o.status != OrderStatus::Open {
                    return format!("skipped: order is {:?}", o.status);
                }
                if o.shipping_lock && !ignore_lock {
                    return "skipped: shipping lock".into();
                }
                let open: Vec<usize> = (0..o.lines.len())
                    .filter(|i| o.lines[*i].status == LineStatus::Open)
                    .take(*lines as usize)
                    .collect();
                if open.is_empty() {
                    return "skipped: nothing left to ship".into();
                }
                let sum: i64 = open
                    .iter()
                    .map(|i| o.lines[*i].amount.to_minor().expect("minor"))
                    .sum();
                let amount =
                    (sum - sum * i64::from(*discount_pct) / 100).max(1) + i64::from(*round_up);
                let id = format!("R{}", o.invoices.len() + 1);
                let amount = money(amount);
                let ids: Vec<String> = open.iter().map(|i| o.lines[*i].line_id.clone()).collect();
                self.erp.edit(ORDER_ID, |o| {
                    for i in &open {
                        o.lines[*i].status = LineStatus::Shipped;
                    }
                    o.invoices.push(Invoice {
                        invoice_id: id.clone(),
                        amount,
                        captured: false,
                    });
                });
                format!(
                    "invoice {id} = {} {cur} for {}{}",
                    amount.amount(),
                    ids.join(","),
                    if o.shipping_lock {
                        " (despite the lock)"
                    } else {
                        ""
                    }
                )
            }
            Action::CancelLine { pick, nlb } => {
                let Some(o) = o else {
                    return "skipped: not imported".into();
                };
                if o.status == OrderStatus::Closed {
                    return "skipped: order is CLOSED".into();
                }
                let open: Vec<usize> = (0..o.lines.len())
                    .filter(|i| o.lines[*i].status == LineStatus::Open)
                    .collect();
                if open.is_empty() {
                    return "skipped: no open line".into();
                }
                let i = open[(*pick % open.len() as u64) as usize];
                let status = if *nlb {
                    LineStatus::NotDeliverable
                } else {
                    LineStatus::Cancelled
                };
                self.erp.edit(ORDER_ID, |o| o.lines[i].status = status);
                format!("line {} {status:?}", o.lines[i].line_id)
            }
            Action::CancelRest => {
                let Some(o) = o else {
                    return "skipped: not imported".into();
                };
                if o.status == OrderStatus::Closed {
                    return "skipped: order is CLOSED".into();
                }
                let open: Vec<usize> = (0..o.lines.len())
                    .filter(|i| o.lines[*i].status == LineStatus::Open)
                    .collect();
                if open.is_empty() {
                    return "skipped: no open line".into();
                }
                self.erp.edit(ORDER_ID, |o| {
                    for i in &open {
                        o.lines[*i].status = LineStatus::Cancelled;
                    }
                });
                let all = open.len() == o.lines.len();
                format!(
                    "{} line(s) cancelled{}",
                    open.len(),
                    if all { " (whole order)" } else { "" }
                )
            }
            Action::Close => {
                let Some(o) = o else {
                    return "skipped: not imported".into();
                };
                if o.status == OrderStatus::Closed {
                    return "skipped: already CLOSED".into();
                }
                if o.fully_cancelled()
                    || (o.status == OrderStatus::Open && o.nothing_left_to_ship())
                {
                    self.erp.edit(ORDER_ID, |o| o.status = OrderStatus::Closed);
                    "CLOSED".into()
                } else {
                    format!("skipped: order is {:?} with lines to ship", o.status)
                }
            }
            Action::Credit { pick, pct, settled } => {
                let Some(o) = o else {
                    return "skipped: not imported".into();
                };
                if o.invoices.is_empty() {
                    return "skipped: no invoice".into();
                }
                let inv = &o.invoices[(*pick % o.invoices.len() as u64) as usize];
                let credited: i64 = o
                    .credit_notes
                    .iter()
                    .filter(|c| c.invoice_id.as_deref() == Some(inv.invoice_id.as_str()))
                    .map(|c| c.amount.to_minor().expect("minor"))
                    .sum();
                let left = inv.amount.to_minor().expect("minor") - credited;
                if left <= 0 {
                    return format!("skipped: invoice {} fully credited", inv.invoice_id);
                }
                let amount = money((left * i64::from(*pct) / 100).max(1));
                let id = format!("G{}", o.credit_notes.len() + 1);
                let inv_id = inv.invoice_id.clone();
                let settled = *settled;
                self.erp.edit(ORDER_ID, |o| {
                    o.credit_notes.push(CreditNote {
                        credit_id: id.clone(),
                        invoice_id: Some(inv_id.clone()),
                        amount,
                        settled,
                    })
                });
                format!("credit note {id} = {} {cur} on {inv_id}", amount.amount())
            }
            Action::Receipt { partial, hooks } => {
                let Some(p) = self.psp.payment(PAYMENT_ID) else {
                    return "skipped: no payment".into();
                };
                let Ok(pos) = p.position() else {
                    return "skipped: position broken".into();
                };
                let m = |x: paybridge_core::money::Money| x.to_minor().expect("minor");
                let due = m(pos.authorized) - m(pos.reversed) - m(pos.charged);
                if due <= 0 {
                    return "skipped: nothing due".into();
                }
                let amount = if *partial { (due / 2).max(1) } else { due };
                self.psp.receive_transfer(PAYMENT_ID, money(amount));
                let now = self.sim.now();
                for h in hooks {
                    self.sim
                        .schedule_hook(now + Duration::seconds(h.delay), h.event);
                }
                format!("{} {cur} received", money(amount).amount())
            }
            Action::AuthSettles { hooks } => {
                let Some(mut p) = self.psp.payment(PAYMENT_ID) else {
                    return "skipped: no payment".into();
                };
                if p.transactions[0].status != TxStatus::Pending {
                    return "skipped: not pending".into();
                }
                p.transactions[0].status = TxStatus::Success;
                self.psp.put(p);
                let now = self.sim.now();
                for h in hooks {
                    self.sim
                        .schedule_hook(now + Duration::seconds(h.delay), h.event);
                }
                "authorization now successful".into()
            }
            Action::Touch => {
                if o.is_none() {
                    return "skipped: not imported".into();
                }
                self.erp.edit(ORDER_ID, |_| {});
                "order marked changed".into()
            }
        }
    }

    /// The document history plays out while the system runs under faults.
    async fn fault_phase(&mut self) {
        let start = self.sc.order.start;
        let last = self.sc.steps.last().map_or(0, |s| s.at);
        let last_switch = self.sc.switches.last().map_or(0, |s| s.at);
        let end = start + Duration::seconds(last.max(last_switch) + 600);
        self.switches = self
            .sc
            .switches
            .iter()
            .map(|s| (start + Duration::seconds(s.at), s.off, 0))
            .collect();
        let mut next_step = 0;
        let mut next_poll = start;
        let mut idle = 0u32;
        for _ in 0..50_000 {
            let now = self.sim.now();
            let mut busy = false;
            while next_step < self.sc.steps.len() && self.step_at(next_step) <= now {
                let what = self.resolve(next_step);
                let s = &self.sc.steps[next_step];
                self.history
                    .push(format!("history t+{}s {} → {what}", s.at, s.action));
                next_step += 1;
                busy = true;
            }
            busy |= self.operator(false).await;
            busy |= self.apply_late(false).await;
            busy |= self.deliver_hooks(false).await;
            if busy {
                // The one-minute schedule picks a change up within a minute.
                let soon = now + Duration::seconds(self.sim.range(1, POLL_EVERY));
                next_poll = next_poll.min(soon);
            }
            if now >= next_poll {
                let seen = self.poll().await;
                busy |= seen.planned;
                // Idle stretches (nothing changed in the ERP or at the PSP, nothing planned) are
                // polled every 10 minutes, then hourly, instead of every minute: such polls find nothing new, and the run
                // stays cheap over hours of simulated time. Any change brings the next poll back
                // within a minute (above).
                let every = match idle {
                    0..=1 => POLL_EVERY,
                    2..=3 => 600,
                    _ => 3600,
                };
                next_poll = self.sim.now() + Duration::seconds(every);
            }
            let handled = work(&self.sim, &self.parts, "worker").await;
            self.stats[0] += 1;
            self.stats[2] += 1;
            idle = if busy { 0 } else { idle + 1 };
            let now = self.sim.now();
            if next_step >= self.sc.steps.len() && self.switches.is_empty() && now >= end {
                return;
            }
            if handled > 0 {
                let dt = self.sim.range(1, 20);
                self.sim.advance(dt);
            } else {
                let mut next = next_poll;
                if next_step < self.sc.steps.len() {
                    next = next.min(self.step_at(next_step));
                }
                if let Some(s) = self.switches.first() {
                    next = next.min(s.0);
                }
                if let Some(due) = self.next_due(now).await {
                    next = next.min(due);
                }
                {
                    let st = self.sim.state();
                    if let Some(h) = st.hooks.iter().map(|h| h.at).min() {
                        next = next.min(h);
                    }
                    if let Some(l) = st.late.iter().map(|l| l.at).min() {
                        next = next.min(l);
                    }
                }
                self.sim.advance_to(next.max(now + Duration::seconds(1)));
            }
        }
        self.sim
            .note("fault phase cut short after 50000 steps".to_string());
    }

    /// The next time an unfinished operation becomes due (from the ledger, read directly).
    async fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let ops = Repo::new(self.store.as_ref())
            .ops(&self.key(), now)
            .await
            .ok()?;
        ops.iter()
            .filter_map(|o| match o.status {
                OpStatus::Retry => o.next_attempt_at,
                OpStatus::Running => o.lease_until,
                _ => None,
            })
            .filter(|t| *t > now)
            .min()
            .map(|t| t + Duration::seconds(1))
    }

    /// Runs without faults until nothing is queued, due or pending. False if it never got
    /// there (the check counts that as lost work).
    async fn quiesce(&mut self) -> bool {
        self.sim.set_faults(false);
        self.poller += 1;
        let key = self.key();
        let deadline = self.sim.now() + Duration::days(7);
        for _ in 0..2_000 {
            self.operator(true).await;
            self.apply_late(true).await;
            self.deliver_hooks(true).await;
            // Work first; poll (read the ERP, sweep) only once the workers ran dry.
            let early = work(&self.sim, &self.parts, "worker").await;
            self.stats[2] += 1;
            if early > 0 {
                self.sim.advance(5);
                continue;
            }
            let seen = self.poll().await;
            let handled = work(&self.sim, &self.parts, "worker").await;
            self.stats[2] += 1;
            let now = self.sim.now();
            let repo = Repo::new(self.store.as_ref());
            let ops = match repo.ops(&key, now).await {
                Ok(ops) => ops,
                Err(e) => {
                    self.app_errors
                        .push(format!("quiescence: reading the ledger failed: {e}"));
                    return false;
                }
            };
            let depth = self.queue.depth().await.unwrap_or(usize::MAX);
            let open: Vec<_> = ops.iter().filter(|o| !o.status.is_terminal()).collect();
            let pending_hooks = !self.sim.state().hooks.is_empty();
            // During quiet hours the poller does not read the ERP: not quiescent yet.
            let quiet_until = self.parts.app("quiet-check").quiet_until(now);
            if depth == 0
                && open.is_empty()
                && !pending_hooks
                && !seen.busy
                && handled == 0
                && seen.read
                && quiet_until.is_none()
            {
                return true;
            }
            if now > deadline {
                return false;
            }
            // Jump to the next thing that can happen: an operation due, a lease expiring, a
            // delayed message becoming visible (unknown here: at most ten minutes).
            let mut next = now + Duration::minutes(10);
            for o in &open {
                let due = match o.status {
                    OpStatus::Retry => o.next_attempt_at,
                    OpStatus::Running => o.lease_until,
                    _ => Some(now),
                };
                if let Some(d) = due {
                    next = next.min(d + Duration::seconds(1));
                }
            }
            match quiet_until {
                // Nothing but sweeps happens during quiet hours: go to their end.
                Some(q) => next = q + Duration::seconds(1),
                None if handled > 0 || seen.busy => next = next.min(now + Duration::seconds(5)),
                // Another (dead) poller's lease: wait for it to expire.
                None if !seen.read => next = next.min(now + Duration::seconds(30)),
                None => {}
            }
            self.sim.advance_to(next.max(now + Duration::seconds(1)));
        }
        false
    }

    /// The final state, for `--only` / `--verbose`.
    async fn detail(&self) -> Vec<String> {
        let now = self.sim.now();
        let key = self.key();
        let repo = Repo::new(self.store.as_ref());
        let mut out = vec![format!(
            "final: t+{}s {}",
            (now - self.sc.order.start).num_seconds(),
            now.to_rfc3339()
        )];
        {
            use crate::sim::CallKind::*;
            let st = self.sim.state();
            let kinds = [
                StoreRead,
                StoreWrite,
                QueueRead,
                QueueReceive,
                QueueWrite,
                ErpRead,
                ErpWrite,
                ErpReadBack,
                PspRead,
                PspWrite,
                Notify,
            ];
            let parts: Vec<String> = kinds
                .iter()
                .map(|k| format!("{k:?}={}", st.by_kind[*k as usize]))
                .collect();
            out.push(format!(
                "calls: total={} {} loop-steps={} polls={} worker-runs={}",
                st.calls,
                parts.join(" "),
                self.stats[0],
                self.stats[1],
                self.stats[2]
            ));
        }
        if let Some(o) = self.erp.order(ORDER_ID) {
            out.push(format!(
                "final erp order: {:?} lock={} lines=[{}] invoices=[{}] credits=[{}]",
                o.status,
                o.shipping_lock,
                o.lines
                    .iter()
                    .map(|l| format!("{}:{:?}:{}", l.line_id, l.status, l.amount.amount()))
                    .collect::<Vec<_>>()
                    .join(" "),
                o.invoices
                    .iter()
                    .map(|i| format!(
                        "{}:{}:captured={}",
                        i.invoice_id,
                        i.amount.amount(),
                        i.captured
                    ))
                    .collect::<Vec<_>>()
                    .join(" "),
                o.credit_notes
                    .iter()
                    .map(|c| format!("{}:{}", c.credit_id, c.amount.amount()))
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
        if let Some(p) = self.psp.payment(PAYMENT_ID) {
            out.push(format!(
                "final psp: state={:?} position={:?}",
                p.state,
                p.position().ok()
            ));
            for t in &p.transactions {
                out.push(format!(
                    "final psp tx {} {:?} {:?} {} ref={:?}",
                    t.id, t.kind, t.status, t.amount, t.reference
                ));
            }
        }
        for op in repo.ops(&key, now).await.unwrap_or_default() {
            out.push(format!(
                "final op {} {:?} attempts={} psp_done={} psp_tx={:?} erp_done={}/{} inflight={:?} last_error={:?}",
                crate::sim::short_op(&op.id),
                op.status,
                op.attempts,
                op.psp_done,
                op.psp_tx,
                op.erp_done,
                op.plan.erp.len(),
                op.inflight,
                op.last_error
            ));
        }
        if let Ok(Some(rec)) = repo.order(&key, now).await {
            for f in &rec.flags {
                out.push(format!(
                    "final flag {:?} {}: {}",
                    f.severity, f.code, f.message
                ));
            }
        }
        for (_, r, w) in self.erp.writes() {
            out.push(format!(
                "final erp write {} by {}",
                crate::sim::write_label(&w),
                crate::sim::short_op(&r)
            ));
        }
        for h in repo.history(&key, now).await.unwrap_or_default() {
            out.push(format!(
                "ledger history t+{}s {}{}",
                (h.at - self.sc.order.start).num_seconds(),
                h.what,
                h.op_id
                    .map(|o| format!(" [{}]", crate::sim::short_op(&o)))
                    .unwrap_or_default()
            ));
        }
        out
    }

    async fn check(&mut self, quiesced: bool) -> (Findings, u64) {
        let now = self.sim.now();
        let key = self.key();
        let repo = Repo::new(self.store.as_ref());
        let ops = repo.ops(&key, now).await.unwrap_or_default();
        let record = repo.order(&key, now).await.ok().flatten();
        let unapplied = repo
            .unapplied_events(TENANT, 100, now)
            .await
            .unwrap_or_default();
        let linked = repo
            .order_for_payment(TENANT, PAYMENT_ID, now)
            .await
            .ok()
            .flatten()
            .is_some();
        let dead_letters = self.queue.dead_letters().await.map_or(0, |d| d.len());
        let cfg = self
            .parts
            .config
            .method_for(CONN, "01", "UNZER")
            .expect("method config")
            .clone();
        let (captures, hands_off_violations, windows) = {
            let st = self.sim.state();
            (
                st.captures.clone(),
                st.hands_off_violations.clone(),
                st.windows.clone(),
            )
        };
        let fin = Final {
            key,
            now,
            family: self.sc.order.family,
            cfg,
            erp_order: self.erp.order(ORDER_ID),
            payment: self.psp.payment(PAYMENT_ID).expect("payment"),
            ops,
            record,
            writes: self.erp.writes(),
            sent: self.notes.sent(),
            unapplied,
            linked,
            quiesced,
            dead_letters,
            start: self.sc.order.start,
            auth_days: self.sc.auth.days,
            auth_at: self
                .sc
                .auth
                .at
                .map(|a| self.sc.order.start + Duration::seconds(a)),
            captures,
            hands_off_violations,
            windows,
        };
        let findings = check::check(&fin);
        (findings, check::digest(&fin))
    }
}
