//! The simulated world one lifecycle runs in: a clock, a stack of simulated processes, the fault
//! stream, and decorators around the real adapters (`Store`, `Queue`, `Erp`, `Psp`, `Notifier`)
//! that count every call and, when the fault stream says so, inject a fault at that call.
//!
//! **Process death.** A crash is decided at one adapter call, either before the call (nothing
//! happens) or after it (the effect happened, the caller never learns). From then on every
//! adapter call of that process fails without effect: whatever the product does with the error,
//! nothing more of that process reaches the store, the queue, the ERP or the PSP. The harness
//! sees the process died and does not ack its message; the queue redelivers it after the
//! visibility timeout. The `App` itself keeps no state between calls, so a new process is just a
//! new `App` value with a new lease holder name.
//!
//! **Slow calls.** A pause at a write advances the clock and runs another worker meanwhile (a
//! duplicate delivery of the current job, a worker batch or a poll), before or after the call
//! takes effect. That is how two workers interleave, deterministically, on one thread. Unless
//! `--hazards` is given, pauses never take a job past its operation lease (the product's stated
//! assumption: a job ends before its lease does).
//!
//! Everything is sequential: one future at a time, decisions from one seeded stream, so the
//! same `(seed, index)` gives the same calls, faults and results.

use crate::rng::Rng;
use crate::scenario::FaultProfile;
use crate::world;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use paybridge_core::config::MethodConfig;
use paybridge_core::erp::memory::MemoryErp;
use paybridge_core::erp::{Changes, Erp, ErpError};
use paybridge_core::ledger::{self, ErpWrite, OpStatus, OrderKey, PspCall, Purpose};
use paybridge_core::model::{ErpOrder, OrderStatus, PspPayment, PspTransaction};
use paybridge_core::notify::{Notifier, NotifyError, Problem};
use paybridge_core::psp::memory::MemoryPsp;
use paybridge_core::psp::{Psp, PspError, PspOutcome};
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::queue::{Delivery, Job, Queue, QueueError};
use paybridge_core::store::repo::Repo;
use paybridge_core::store::{Item, Store, StoreError, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// The longest a job may take (clock advance from its start) under the default assumptions:
/// below the Lambda worker's 50 s timeout, far below the 5-minute operation lease.
pub const JOB_BUDGET_SECS: i64 = 45;

/// Message text of every error a dead process gets back.
pub const DIED: &str = "simulated process death";

/// One simulated process (a worker, the poller, a webhook handler).
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub dead: bool,
    /// The job being handled, for "duplicate delivery while it runs".
    pub job: Option<Job>,
    /// When (in [`SimState::tick`] order) the process began its current job, or began at all.
    pub job_tick: u64,
}

/// A capture the product sent to the PSP (a live process called `execute`, whatever became of
/// the call), for the expiry check.
#[derive(Debug, Clone)]
pub struct CaptureSend {
    pub at: DateTime<Utc>,
    pub reference: String,
    pub proc: String,
}

/// The order is out of automation: the operator's switch is committed in the store.
#[derive(Debug, Clone)]
pub struct Window {
    pub since: DateTime<Utc>,
    /// [`SimState::tick`] of the commit.
    pub tick: u64,
    /// Operations (ids and PSP references) that may still call out while it lasts: started or
    /// claimed in the store at the commit, or started by a job begun before the commit.
    pub allowed: std::collections::BTreeSet<String>,
}

/// A PSP call the PSP applies later than the caller gave up on it (`--hazards`).
pub struct LateCall {
    pub at: DateTime<Utc>,
    pub account: MethodConfig,
    pub payment: PspPayment,
    pub call: PspCall,
    pub reference: String,
}

/// A webhook Unzer will (re)send.
#[derive(Debug, Clone)]
pub struct PendingHook {
    pub at: DateTime<Utc>,
    pub event: String,
    pub attempt: u32,
}

/// What kind of adapter call is being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    // (11 kinds; `SimState::by_kind` counts them)
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
}

impl CallKind {
    fn effectful(self) -> bool {
        matches!(
            self,
            CallKind::StoreWrite
                | CallKind::QueueReceive
                | CallKind::QueueWrite
                | CallKind::ErpWrite
                | CallKind::PspWrite
        )
    }

    fn pausable(self) -> bool {
        matches!(
            self,
            CallKind::StoreWrite | CallKind::QueueWrite | CallKind::ErpWrite | CallKind::PspWrite
        )
    }
}

/// An adapter-specific fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Known not applied (5xx before processing, connection refused, read failed).
    Unavailable,
    /// Applied, but the reply is lost (timeout after sending).
    UnknownApplied,
    /// Not applied, but the caller cannot know (timeout before processing).
    UnknownLost,
    /// A business decline from the PSP.
    Declined,
    /// The ERP cannot tell whether a write was applied.
    ReadBackNone,
    /// The PSP times out and applies the call this many seconds later (`--hazards`).
    LateApply(i64),
}

/// The decision for one adapter call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// The process died earlier: fail without effect.
    Dead,
    CrashBefore,
    CrashAfter,
    /// Slow: the clock advances by the seconds and others run, before the call takes effect.
    PauseBefore(i64),
    /// Slow: the call takes effect, then the clock advances and others run before the reply.
    PauseAfter(i64),
    Fault(Fault),
}

pub struct SimState {
    pub now: DateTime<Utc>,
    pub t0: DateTime<Utc>,
    rng: Rng,
    pub profile: FaultProfile,
    pub faults_on: bool,
    pub calls: u64,
    /// Calls by kind (index = `CallKind as usize`).
    pub by_kind: [u64; 11],
    pub procs: Vec<Proc>,
    /// One trace line per fault that fired.
    pub fired: Vec<String>,
    pub hooks: Vec<PendingHook>,
    pub late: Vec<LateCall>,
    /// Nesting depth of pauses that run other workers (at most 1).
    depth: u32,
    /// Start of the outermost job: pauses are budgeted against it.
    job_start: DateTime<Utc>,
    /// Names of processes, numbered.
    seq: u64,
    /// A logical clock: job starts and switch commits in the order they happened.
    pub tick: u64,
    /// When the PSP refuses captures (the drawn authorization's expiry), if it says.
    pub expiry: Option<DateTime<Utc>>,
    /// Captures sent, in order.
    pub captures: Vec<CaptureSend>,
    /// The operator's switch being made (`Some(off)`) by the process on top.
    pub pending_switch: Option<bool>,
    /// The hands-off window in force, if any.
    pub window: Option<Window>,
    /// Every hands-off window: (since, until; `None`: still out at the end).
    pub windows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// Calls that started for an order out of automation (the hands-off check).
    pub hands_off_violations: Vec<String>,
}

/// The shared world of one lifecycle.
pub struct Sim {
    st: Mutex<SimState>,
    /// The decorated adapters, for workers started inside a pause. Cleared at the end of the
    /// lifecycle (it closes a reference cycle through the decorators).
    parts: Mutex<Option<world::Parts>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sim {
    pub fn new(t0: DateTime<Utc>, rng: Rng, profile: FaultProfile) -> Sim {
        Sim {
            st: Mutex::new(SimState {
                now: t0,
                t0,
                rng,
                profile,
                faults_on: true,
                calls: 0,
                by_kind: [0; 11],
                procs: Vec::new(),
                fired: Vec::new(),
                hooks: Vec::new(),
                late: Vec::new(),
                depth: 0,
                job_start: t0,
                seq: 0,
                tick: 0,
                expiry: None,
                captures: Vec::new(),
                pending_switch: None,
                window: None,
                windows: Vec::new(),
                hands_off_violations: Vec::new(),
            }),
            parts: Mutex::new(None),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.st)
    }

    pub fn set_parts(&self, parts: Option<world::Parts>) {
        *lock(&self.parts) = parts;
    }

    pub fn parts(&self) -> Option<world::Parts> {
        lock(&self.parts).clone()
    }

    // ---- clock

    pub fn now(&self) -> DateTime<Utc> {
        self.state().now
    }

    pub fn advance(&self, secs: i64) {
        let mut st = self.state();
        st.now += Duration::seconds(secs.max(0));
    }

    /// Moves the clock to `t` if that is later.
    pub fn advance_to(&self, t: DateTime<Utc>) {
        let mut st = self.state();
        if t > st.now {
            st.now = t;
        }
    }

    // ---- random draws (fault stream)

    pub fn range(&self, lo: i64, hi: i64) -> i64 {
        self.state().rng.range(lo, hi)
    }

    pub fn chance(&self, num: u64, den: u64) -> bool {
        self.state().rng.chance(num, den)
    }

    pub fn shuffle<T>(&self, xs: &mut [T]) {
        self.state().rng.shuffle(xs);
    }

    pub fn faults_on(&self) -> bool {
        self.state().faults_on
    }

    pub fn set_faults(&self, on: bool) {
        self.state().faults_on = on;
    }

    // ---- processes

    /// Starts a process; returns its name (`prefix-N`).
    pub fn begin(&self, prefix: &str) -> String {
        let mut st = self.state();
        st.seq += 1;
        let name = format!("{prefix}-{}", st.seq);
        st.tick += 1;
        let job_tick = st.tick;
        st.procs.push(Proc {
            name: name.clone(),
            dead: false,
            job: None,
            job_tick,
        });
        if st.depth == 0 {
            st.job_start = st.now;
        }
        name
    }

    /// Ends the current process; true if it died.
    pub fn end(&self) -> bool {
        self.state().procs.pop().is_some_and(|p| p.dead)
    }

    pub fn dead(&self) -> bool {
        self.state().procs.last().is_some_and(|p| p.dead)
    }

    /// The current process starts handling `job` at `now`.
    pub fn start_job(&self, job: Option<Job>) {
        let mut st = self.state();
        if st.depth == 0 {
            st.job_start = st.now;
        }
        st.tick += 1;
        let tick = st.tick;
        if let Some(p) = st.procs.last_mut() {
            p.job = job;
            p.job_tick = tick;
        }
    }

    // ---- operator switches and the calls that start meanwhile

    /// The operator process on top starts switching the order `off` (or back on).
    pub fn begin_switch(&self, off: bool) {
        self.state().pending_switch = Some(off);
    }

    pub fn end_switch(&self) {
        self.state().pending_switch = None;
    }

    /// The switch being made, if the process on top is the operator making it.
    pub fn pending_switch(&self) -> Option<bool> {
        let st = self.state();
        let top = st.procs.last()?;
        // A write that took effect as the process died (crash after the call) counts too.
        top.name
            .starts_with("operator")
            .then_some(st.pending_switch)
            .flatten()
    }

    /// The operator's switch is in the store now: a window opens (with what may still run) or
    /// closes.
    pub fn switch_committed(&self, off: bool, allowed: std::collections::BTreeSet<String>) {
        let mut st = self.state();
        st.pending_switch = None;
        if st.window.is_some() == off {
            // Already so: a repeated switch (after a failure) that wrote the record again.
            return;
        }
        st.tick += 1;
        let (now, tick) = (st.now, st.tick);
        if off {
            st.window = Some(Window {
                since: now,
                tick,
                allowed,
            });
            st.windows.push((now, None));
        } else {
            st.window = None;
            if let Some(w) = st.windows.last_mut() {
                w.1 = Some(now);
            }
        }
    }

    /// A PSP `execute` (`op` its reference) or an ERP `apply` (`op` the operation id) is about
    /// to be made by the process on top; `dead`: the process died before (nothing is sent).
    /// While the order is out of automation it must be a switch comment, an operation
    /// started or claimed before the switch, or come from a job begun before it.
    fn outbound(&self, dead: bool, op: &str, switch_op: bool, what: impl FnOnce() -> String) {
        let mut st = self.state();
        let (proc, job_tick) = st
            .procs
            .last()
            .map_or(("-".to_string(), 0), |p| (p.name.clone(), p.job_tick));
        let now = st.now;
        let t0 = st.t0;
        let Some(w) = st.window.as_mut() else {
            return;
        };
        if switch_op || w.allowed.contains(op) {
            return;
        }
        if job_tick < w.tick {
            // This job may have read the order before the switch: it lets it finish, and so
            // may whoever resumes it.
            w.allowed.insert(op.to_string());
            return;
        }
        if dead {
            return;
        }
        let line = format!(
            "t+{}s [{proc}] {} for {} started while the order is out of automation (since t+{}s)",
            (now - t0).num_seconds(),
            what(),
            short_op(op),
            (w.since - t0).num_seconds()
        );
        st.hands_off_violations.push(line);
    }

    /// Whether the PSP refuses a capture now (the authorization expired).
    fn expired(&self) -> bool {
        let st = self.state();
        st.expiry.is_some_and(|e| st.now >= e)
    }

    /// Enters a pause's nested run: the current job (to duplicate) and which activity, or
    /// `None` when nesting is not allowed (already nested, faults off).
    pub fn enter_nested(&self) -> Option<(Option<Job>, u64)> {
        let mut st = self.state();
        if st.depth > 0 || !st.faults_on {
            return None;
        }
        st.depth += 1;
        let job = st.procs.last().and_then(|p| p.job.clone());
        let activity = st.rng.below(100);
        Some((job, activity))
    }

    pub fn leave_nested(&self) {
        let mut st = self.state();
        st.depth = st.depth.saturating_sub(1);
    }

    fn trace(st: &mut SimState, n: u64, what: String) {
        let rel = (st.now - st.t0).num_seconds();
        let proc = st
            .procs
            .last()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "-".into());
        let k = st.fired.len() + 1;
        st.fired
            .push(format!("fault #{k} t+{rel}s call#{n} [{proc}] {what}"));
    }

    /// Decides the fate of one adapter call. `desc` is only evaluated when a fault fires.
    pub fn gate(&self, kind: CallKind, desc: impl FnOnce() -> String) -> Gate {
        let mut st = self.state();
        st.calls += 1;
        st.by_kind[kind as usize] += 1;
        let n = st.calls;
        match st.procs.last() {
            None => return Gate::Go,
            Some(p) if p.dead => return Gate::Dead,
            Some(_) => {}
        }
        if !st.faults_on {
            return Gate::Go;
        }
        let p = st.profile.clone();
        let r = st.rng.below(10_000);
        let mut acc = p.crash;
        if r < acc {
            let after = kind.effectful() && st.rng.chance(1, 2);
            if let Some(top) = st.procs.last_mut() {
                top.dead = true;
            }
            let what = format!(
                "{}: process dies {} the call",
                desc(),
                if after { "AFTER" } else { "BEFORE" }
            );
            Self::trace(&mut st, n, what);
            return if after {
                Gate::CrashAfter
            } else {
                Gate::CrashBefore
            };
        }
        if kind.pausable() {
            acc += p.pause;
            if r < acc {
                let secs = if p.hazards {
                    st.rng.range(1, 200)
                } else {
                    let left =
                        (st.job_start + Duration::seconds(JOB_BUDGET_SECS) - st.now).num_seconds();
                    if left < 1 {
                        return Gate::Go;
                    }
                    st.rng.range(1, left.min(40))
                };
                let before = st.rng.chance(1, 2);
                let what = format!(
                    "{}: slow, {secs}s pass {} it takes effect",
                    desc(),
                    if before { "before" } else { "after" }
                );
                Self::trace(&mut st, n, what);
                return if before {
                    Gate::PauseBefore(secs)
                } else {
                    Gate::PauseAfter(secs)
                };
            }
        }
        let table: Vec<(u64, Fault)> = match kind {
            CallKind::PspWrite => vec![
                (p.psp_unknown_applied, Fault::UnknownApplied),
                (p.psp_unknown_lost, Fault::UnknownLost),
                (p.psp_retryable, Fault::Unavailable),
                (p.psp_declined, Fault::Declined),
                (p.late_apply, Fault::LateApply(0)),
            ],
            CallKind::PspRead => vec![(p.psp_read_down, Fault::Unavailable)],
            CallKind::StoreRead | CallKind::StoreWrite => {
                vec![(p.store_error, Fault::Unavailable)]
            }
            CallKind::QueueWrite | CallKind::QueueReceive => {
                vec![(p.queue_error, Fault::Unavailable)]
            }
            CallKind::ErpWrite => vec![
                (p.erp_lose_reply, Fault::UnknownApplied),
                (p.erp_unavailable, Fault::Unavailable),
                (p.erp_unknown_lost, Fault::UnknownLost),
            ],
            CallKind::ErpRead => vec![(p.erp_read_down, Fault::Unavailable)],
            CallKind::ErpReadBack => vec![
                (p.erp_read_down, Fault::Unavailable),
                (p.erp_readback_none, Fault::ReadBackNone),
            ],
            _ => vec![],
        };
        for (rate, fault) in table {
            acc += rate;
            if r < acc {
                let fault = match fault {
                    Fault::LateApply(_) => Fault::LateApply(st.rng.range(1, 300)),
                    f => f,
                };
                let what = format!("{}: {}", desc(), describe(fault));
                Self::trace(&mut st, n, what);
                return Gate::Fault(fault);
            }
        }
        Gate::Go
    }

    /// Unzer notifies about a transaction paybridge made (a hint that wakes the order up).
    pub fn maybe_tx_hook(&self, event: &str) {
        let mut st = self.state();
        if !st.faults_on {
            return;
        }
        let rate = st.profile.tx_hooks;
        if st.rng.chance(rate, 1000) {
            let at = st.now + Duration::seconds(st.rng.range(0, 120));
            st.hooks.push(PendingHook {
                at,
                event: event.to_string(),
                attempt: 0,
            });
        }
    }

    pub fn schedule_hook(&self, at: DateTime<Utc>, event: &str) {
        self.state().hooks.push(PendingHook {
            at,
            event: event.to_string(),
            attempt: 0,
        });
    }

    pub fn note(&self, what: String) {
        let mut st = self.state();
        let n = st.calls;
        Self::trace(&mut st, n, what);
    }
}

fn describe(f: Fault) -> String {
    match f {
        Fault::Unavailable => "unavailable (not applied)".into(),
        Fault::UnknownApplied => "timeout AFTER it was applied (reply lost)".into(),
        Fault::UnknownLost => "timeout, NOT applied".into(),
        Fault::Declined => "declined by the PSP".into(),
        Fault::ReadBackNone => "read-back cannot tell (None)".into(),
        Fault::LateApply(s) => format!("timeout, the PSP applies it {s}s LATER"),
    }
}

// ------------------------------------------------------------------ store

/// The store (SQLite, or DynamoDB with `--store dynamodb`) behind process deaths and slow
/// writes.
pub struct FaultyStore {
    pub sim: Arc<Sim>,
    pub inner: Arc<dyn Store>,
}

fn store_died() -> StoreError {
    StoreError::Backend(DIED.into())
}

fn store_busy() -> StoreError {
    StoreError::Backend("throttled (simulated)".into())
}

impl FaultyStore {
    /// After a write the operator's switch made took effect: if the order record now says what
    /// the switch wanted, the switch is committed, and the hands-off window opens (with the
    /// operations started or claimed in the store at this moment) or closes. Read from the
    /// store itself, no fault, before anything else runs.
    async fn after_write(&self, ok: bool) {
        if !ok {
            return;
        }
        let Some(off) = self.sim.pending_switch() else {
            return;
        };
        let now = self.sim.now();
        let repo = Repo::new(self.inner.as_ref());
        let key = OrderKey::new(world::TENANT, world::CONN, world::ORDER_ID);
        let Ok(Some(rec)) = repo.order(&key, now).await else {
            return;
        };
        if rec.hands_off_since.is_some() != off {
            return;
        }
        let mut allowed = std::collections::BTreeSet::new();
        if off {
            for op in repo.ops(&key, now).await.unwrap_or_default() {
                let claimed =
                    op.status == OpStatus::Running && op.lease_until.is_some_and(|u| u > now);
                if op.started() || claimed {
                    allowed.insert(ledger::psp_reference(&op.id));
                    allowed.insert(op.id);
                }
            }
        }
        self.sim.switch_committed(off, allowed);
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError> {
        match self
            .sim
            .gate(CallKind::StoreRead, || format!("store.get {pk} {sk}"))
        {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(store_died()),
            Gate::Fault(_) => Err(store_busy()),
            _ => self.inner.get(pk, sk, now).await,
        }
    }

    async fn insert(&self, item: &Item, now: i64) -> Result<bool, StoreError> {
        let gate = self.sim.gate(CallKind::StoreWrite, || {
            format!("store.insert {} {}", item.pk, item.sk)
        });
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(store_died()),
            Gate::CrashAfter => {
                let _ = self.inner.insert(item, now).await;
                Err(store_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.insert(item, now).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.insert(item, now).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(store_busy()),
            Gate::Go => self.inner.insert(item, now).await,
        }
    }

    async fn update(&self, item: &Item) -> Result<u64, StoreError> {
        let gate = self.sim.gate(CallKind::StoreWrite, || {
            format!("store.update {} {} v{}", item.pk, item.sk, item.version)
        });
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(store_died()),
            Gate::CrashAfter => {
                let r = self.inner.update(item).await;
                self.after_write(r.is_ok()).await;
                Err(store_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                let r = self.inner.update(item).await;
                self.after_write(r.is_ok()).await;
                r
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.update(item).await;
                self.after_write(r.is_ok()).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(store_busy()),
            Gate::Go => {
                let r = self.inner.update(item).await;
                self.after_write(r.is_ok()).await;
                r
            }
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str, now: i64) -> Result<Vec<Item>, StoreError> {
        match self.sim.gate(CallKind::StoreRead, || {
            format!("store.query {pk} {sk_prefix}")
        }) {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(store_died()),
            Gate::Fault(_) => Err(store_busy()),
            _ => self.inner.query(pk, sk_prefix, now).await,
        }
    }

    async fn query_index(
        &self,
        gsi_pk: &str,
        gsi_sk_max: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Item>, StoreError> {
        match self.sim.gate(CallKind::StoreRead, || {
            format!("store.query_index {gsi_pk}")
        }) {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(store_died()),
            Gate::Fault(_) => Err(store_busy()),
            _ => self.inner.query_index(gsi_pk, gsi_sk_max, limit, now).await,
        }
    }

    async fn delete(&self, pk: &str, sk: &str, version: u64) -> Result<(), StoreError> {
        let gate = self
            .sim
            .gate(CallKind::StoreWrite, || format!("store.delete {pk} {sk}"));
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(store_died()),
            Gate::CrashAfter => {
                let _ = self.inner.delete(pk, sk, version).await;
                Err(store_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.delete(pk, sk, version).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.delete(pk, sk, version).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(store_busy()),
            Gate::Go => self.inner.delete(pk, sk, version).await,
        }
    }

    async fn commit(&self, writes: &[Write], now: i64) -> Result<Vec<u64>, StoreError> {
        let gate = self.sim.gate(CallKind::StoreWrite, || {
            let keys: Vec<String> = writes
                .iter()
                .map(|w| format!("{} {}", w.key().0, w.key().1))
                .collect();
            format!("store.commit [{}]", keys.join(", "))
        });
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(store_died()),
            Gate::CrashAfter => {
                let r = self.inner.commit(writes, now).await;
                self.after_write(r.is_ok()).await;
                Err(store_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                let r = self.inner.commit(writes, now).await;
                self.after_write(r.is_ok()).await;
                r
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.commit(writes, now).await;
                self.after_write(r.is_ok()).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(store_busy()),
            Gate::Go => {
                let r = self.inner.commit(writes, now).await;
                self.after_write(r.is_ok()).await;
                r
            }
        }
    }
}

// ------------------------------------------------------------------ queue

/// The SQLite queue behind process deaths.
pub struct FaultyQueue {
    pub sim: Arc<Sim>,
    pub inner: SqliteQueue,
}

fn queue_died() -> QueueError {
    QueueError::Backend(DIED.into())
}

fn queue_busy() -> QueueError {
    QueueError::Backend("503 (simulated)".into())
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(
        &self,
        job: &Job,
        delay: std::time::Duration,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let gate = self.sim.gate(CallKind::QueueWrite, || {
            format!("queue.send {}", job_label(job))
        });
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(queue_died()),
            Gate::CrashAfter => {
                let _ = self.inner.send(job, delay, now_ms).await;
                Err(queue_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.send(job, delay, now_ms).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.send(job, delay, now_ms).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(queue_busy()),
            Gate::Go => self.inner.send(job, delay, now_ms).await,
        }
    }

    async fn receive(
        &self,
        max: usize,
        visibility: std::time::Duration,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        match self.sim.gate(CallKind::QueueReceive, || {
            format!("queue.receive max={max}")
        }) {
            Gate::Dead | Gate::CrashBefore => Err(queue_died()),
            Gate::CrashAfter => {
                let _ = self.inner.receive(max, visibility, now_ms).await;
                Err(queue_died())
            }
            Gate::Fault(_) => Err(queue_busy()),
            _ => self.inner.receive(max, visibility, now_ms).await,
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        match self
            .sim
            .gate(CallKind::QueueWrite, || format!("queue.ack {receipt}"))
        {
            Gate::Dead | Gate::CrashBefore => Err(queue_died()),
            Gate::CrashAfter => {
                let _ = self.inner.ack(receipt).await;
                Err(queue_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.ack(receipt).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.ack(receipt).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(queue_busy()),
            Gate::Go => self.inner.ack(receipt).await,
        }
    }

    async fn retry_later(
        &self,
        receipt: &str,
        delay: std::time::Duration,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        match self.sim.gate(CallKind::QueueWrite, || {
            format!("queue.retry_later {receipt} +{}s", delay.as_secs())
        }) {
            Gate::Dead | Gate::CrashBefore => Err(queue_died()),
            Gate::CrashAfter => {
                let _ = self.inner.retry_later(receipt, delay, now_ms).await;
                Err(queue_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.retry_later(receipt, delay, now_ms).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.retry_later(receipt, delay, now_ms).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(_) => Err(queue_busy()),
            Gate::Go => self.inner.retry_later(receipt, delay, now_ms).await,
        }
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        match self.sim.gate(CallKind::QueueRead, || "queue.depth".into()) {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(queue_died()),
            _ => self.inner.depth().await,
        }
    }
}

/// `HandsOff` → `hands_off`, as in operation ids.
pub fn purpose_name(p: Purpose) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn job_label(job: &Job) -> String {
    match job {
        Job::RunOp { op_id, .. } => format!("run-op {}", short_op(op_id)),
        Job::Evaluate { order_pk } => format!("evaluate {order_pk}"),
        Job::ApplyEvent { event_pk, event_sk } => format!("apply-event {event_pk}/{event_sk}"),
    }
}

/// `acme/main/1001/invoice:R1/capture_invoice` → `invoice:R1/capture_invoice`.
pub fn short_op(op_id: &str) -> String {
    op_id.splitn(4, '/').nth(3).unwrap_or(op_id).to_string()
}

// ------------------------------------------------------------------ ERP

/// The memory ERP behind process deaths, lost replies, unavailability, slow writes, read-back
/// failures; optionally listing like pixi.
pub struct FaultyErp {
    pub sim: Arc<Sim>,
    pub inner: MemoryErp,
    /// The order the lifecycle is about (for the pixi-style listing).
    pub order_id: String,
    pub pixi_listing: bool,
}

fn erp_died() -> ErpError {
    ErpError::Unavailable(DIED.into())
}

pub fn write_label(w: &ErpWrite) -> String {
    match w {
        ErpWrite::Release => "release".into(),
        ErpWrite::SetShippingLock => "set-shipping-lock".into(),
        ErpWrite::ClearShippingLock => "clear-shipping-lock".into(),
        ErpWrite::MarkInvoiceCaptured {
            invoice_id, amount, ..
        } => format!("mark-invoice-captured {invoice_id} {amount}"),
        ErpWrite::ManualBooking {
            amount, document, ..
        } => format!("manual-booking {document} {amount}"),
        ErpWrite::TransferDetails { .. } => "transfer-details".into(),
        ErpWrite::Comment { .. } => "comment".into(),
    }
}

#[async_trait]
impl Erp for FaultyErp {
    async fn changes(&self, watermark: Option<&str>) -> Result<Changes, ErpError> {
        match self
            .sim
            .gate(CallKind::ErpRead, || "erp.changes".to_string())
        {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(erp_died()),
            Gate::Fault(_) => Err(ErpError::Unavailable("503 (simulated)".into())),
            _ => {
                let mut c = self.inner.changes(watermark).await?;
                if self.pixi_listing
                    && let Some(o) = self.inner.order(&self.order_id)
                    && (o.status == OrderStatus::Hold || o.invoices.iter().any(|i| !i.captured))
                    && !c.order_ids.contains(&self.order_id)
                {
                    // pixiPayGetOrdersToAuthorize / pixiPayGetInvoicesToCapture list these on
                    // every poll, whatever the watermark.
                    c.order_ids.push(self.order_id.clone());
                }
                Ok(c)
            }
        }
    }

    async fn orders(
        &self,
        order_ids: &[String],
    ) -> Result<Vec<paybridge_core::model::ErpOrder>, ErpError> {
        match self
            .sim
            .gate(CallKind::ErpRead, || "erp.orders".to_string())
        {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(erp_died()),
            Gate::Fault(_) => Err(ErpError::Unavailable("503 (simulated)".into())),
            _ => self.inner.orders(order_ids).await,
        }
    }

    async fn apply(
        &self,
        order: &ErpOrder,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<(), ErpError> {
        let gate = self.sim.gate(CallKind::ErpWrite, || {
            format!("erp.apply {} for {}", write_label(write), short_op(op_ref))
        });
        let switch_op = [Purpose::HandsOff, Purpose::HandsOn]
            .iter()
            .any(|p| op_ref.ends_with(&format!("/{}", purpose_name(*p))));
        self.sim
            .outbound(gate == Gate::Dead, op_ref, switch_op, || {
                format!("ERP write {}", write_label(write))
            });
        match gate {
            Gate::Dead | Gate::CrashBefore => Err(erp_died()),
            Gate::CrashAfter => {
                let _ = self.inner.apply(order, write, op_ref).await;
                Err(erp_died())
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.inner.apply(order, write, op_ref).await
            }
            Gate::PauseAfter(s) => {
                let r = self.inner.apply(order, write, op_ref).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(Fault::UnknownApplied) => {
                self.inner.lose_next_reply();
                self.inner.apply(order, write, op_ref).await
            }
            Gate::Fault(Fault::UnknownLost) => {
                self.inner
                    .fail_next_apply(ErpError::Unknown("timeout (simulated)".into()));
                self.inner.apply(order, write, op_ref).await
            }
            Gate::Fault(_) => {
                self.inner
                    .fail_next_apply(ErpError::Unavailable("503 (simulated)".into()));
                self.inner.apply(order, write, op_ref).await
            }
            Gate::Go => self.inner.apply(order, write, op_ref).await,
        }
    }

    async fn was_applied(
        &self,
        order_id: &str,
        write: &ErpWrite,
        op_ref: &str,
    ) -> Result<Option<bool>, ErpError> {
        let gate = self.sim.gate(CallKind::ErpReadBack, || {
            format!(
                "erp.was_applied {} for {}",
                write_label(write),
                short_op(op_ref)
            )
        });
        match gate {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(erp_died()),
            Gate::Fault(Fault::ReadBackNone) => Ok(None),
            Gate::Fault(_) => Err(ErpError::Unavailable("503 (simulated)".into())),
            _ => self.inner.was_applied(order_id, write, op_ref).await,
        }
    }

    fn can_read_back(&self, order_id: &str, write: &ErpWrite) -> bool {
        self.inner.can_read_back(order_id, write)
    }
}

// ------------------------------------------------------------------ PSP

/// The memory PSP behind process deaths, timeouts (applied or not), 5xx, declines, slow
/// replies, and (with `--hazards`) late application.
pub struct FaultyPsp {
    pub sim: Arc<Sim>,
    pub inner: MemoryPsp,
}

fn call_label(call: &PspCall) -> String {
    match call {
        PspCall::Capture { amount } => format!("capture {amount}"),
        PspCall::Reverse { amount } => format!("reverse {amount}"),
        PspCall::Refund { amount, .. } => format!("refund {amount}"),
        PspCall::Shipment { invoice_id } => format!("shipment {invoice_id}"),
        PspCall::RequestPayment { amount } => format!("payment request {amount}"),
    }
}

fn hook_event(call: &PspCall) -> &'static str {
    match call {
        PspCall::Capture { .. } => "charge.succeeded",
        PspCall::Reverse { .. } => "authorize.canceled",
        PspCall::Refund { .. } => "charge.canceled",
        PspCall::Shipment { .. } => "shipment.succeeded",
        PspCall::RequestPayment { .. } => "payment.pending",
    }
}

impl FaultyPsp {
    async fn real(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        if matches!(call, PspCall::Capture { .. }) && self.sim.expired() {
            // Unzer refuses to capture an expired authorization.
            return PspOutcome::Declined {
                code: "API.330.100.023".into(),
                message: "authorization expired (simulated)".into(),
            };
        }
        let out = self.inner.execute(account, payment, call, reference).await;
        if matches!(out, PspOutcome::Done { .. }) {
            self.sim.maybe_tx_hook(hook_event(call));
        }
        out
    }
}

#[async_trait]
impl Psp for FaultyPsp {
    async fn fetch(
        &self,
        account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        match self
            .sim
            .gate(CallKind::PspRead, || format!("psp.fetch {payment_id}"))
        {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => {
                Err(PspError::Unavailable(DIED.into()))
            }
            Gate::Fault(_) => Err(PspError::Unavailable("503 (simulated)".into())),
            _ => self.inner.fetch(account, payment_id).await,
        }
    }

    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let gate = self.sim.gate(CallKind::PspWrite, || {
            format!("psp.execute {} ref {reference}", call_label(call))
        });
        let dead = gate == Gate::Dead;
        self.sim.outbound(dead, reference, false, || {
            format!("PSP {}", call_label(call))
        });
        if !dead && matches!(call, PspCall::Capture { .. }) {
            let mut st = self.sim.state();
            let proc = st.procs.last().map_or("-".into(), |p| p.name.clone());
            let at = st.now;
            st.captures.push(CaptureSend {
                at,
                reference: reference.to_string(),
                proc,
            });
        }
        match gate {
            Gate::Dead | Gate::CrashBefore => PspOutcome::Unknown {
                message: DIED.into(),
            },
            Gate::CrashAfter => {
                let _ = self.real(account, payment, call, reference).await;
                PspOutcome::Unknown {
                    message: DIED.into(),
                }
            }
            Gate::PauseBefore(s) => {
                world::pause(&self.sim, s).await;
                self.real(account, payment, call, reference).await
            }
            Gate::PauseAfter(s) => {
                let r = self.real(account, payment, call, reference).await;
                world::pause(&self.sim, s).await;
                r
            }
            Gate::Fault(Fault::UnknownApplied) => {
                self.inner.inject_next(
                    PspOutcome::Unknown {
                        message: "timeout (simulated)".into(),
                    },
                    true,
                );
                self.real(account, payment, call, reference).await
            }
            Gate::Fault(Fault::UnknownLost) => {
                self.inner.inject_next(
                    PspOutcome::Unknown {
                        message: "connection reset (simulated)".into(),
                    },
                    false,
                );
                self.real(account, payment, call, reference).await
            }
            Gate::Fault(Fault::Declined) => {
                self.inner.inject_next(
                    PspOutcome::Declined {
                        code: "API.330.000.004".into(),
                        message: "declined (simulated)".into(),
                    },
                    false,
                );
                self.real(account, payment, call, reference).await
            }
            Gate::Fault(Fault::LateApply(secs)) => {
                let at = self.sim.now() + Duration::seconds(secs);
                self.sim.state().late.push(LateCall {
                    at,
                    account: account.clone(),
                    payment: payment.clone(),
                    call: call.clone(),
                    reference: reference.to_string(),
                });
                PspOutcome::Unknown {
                    message: "timeout (simulated, applied later)".into(),
                }
            }
            Gate::Fault(_) => {
                self.inner.inject_next(
                    PspOutcome::Retryable {
                        message: "503 (simulated)".into(),
                    },
                    false,
                );
                self.real(account, payment, call, reference).await
            }
            Gate::Go => self.real(account, payment, call, reference).await,
        }
    }

    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        match self.sim.gate(CallKind::PspRead, || {
            format!("psp.find_transaction {reference}")
        }) {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => {
                Err(PspError::Unavailable(DIED.into()))
            }
            Gate::Fault(_) => Err(PspError::Unavailable("503 (simulated)".into())),
            _ => {
                self.inner
                    .find_transaction(account, payment, call, reference)
                    .await
            }
        }
    }
}

// ------------------------------------------------------------------ notifier

/// The recording notifier behind process deaths.
pub struct FaultyNotifier {
    pub sim: Arc<Sim>,
    pub inner: paybridge_core::notify::recording::RecordingNotifier,
}

#[async_trait]
impl Notifier for FaultyNotifier {
    async fn notify(&self, p: &Problem) -> Result<(), NotifyError> {
        match self
            .sim
            .gate(CallKind::Notify, || format!("notify {}", p.code))
        {
            Gate::Dead | Gate::CrashBefore | Gate::CrashAfter => Err(NotifyError(DIED.into())),
            _ => self.inner.notify(p).await,
        }
    }
}
