//! Evaluation of one order: the facts (new from a poll or the stored ones), the PSP view (the
//! stored one while it is known to be current, else one fresh read), the ledger, the engine's
//! decision; the record (when it changed), the new operations and their history lines saved in
//! one commit, then the new operations queued and new errors told to the operator once.
//!
//! After an operation ends, its end is saved in the commit of the evaluation that follows it up
//! (the operation rides along): one write records both.

use super::psp_view::Known;
use super::{App, AppError};
use crate::config::MethodConfig;
use crate::engine::{self, Flag, Input};
use crate::ledger::{Operation, OrderKey};
use crate::model::{ErpOrder, PspPayment};
use crate::notify::Problem;
use crate::queue::Job;
use crate::store::repo::{EventRecord, HistoryEntry, OrderRecord, Repo};
use crate::store::{MAX_COMMIT_WRITES, StoreError, Write};
use chrono::{DateTime, Utc};

impl App {
    /// Evaluates one order: new facts (from a poll) or the stored ones (after a webhook or a
    /// finished operation), the PSP view, the ledger; inserts and enqueues new operations,
    /// records flags and notifies new errors. Returns the number of operations planned.
    pub async fn evaluate(
        &self,
        key: &OrderKey,
        new_facts: Option<ErpOrder>,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        self.evaluate_with(key, new_facts.as_ref(), None, now).await
    }

    /// Evaluates the order `rider` belongs to and saves `rider` (an operation that ended, its
    /// follow-up mark cleared) in the evaluation's commit; `false` when the operation's claim
    /// was taken over meanwhile (then nothing of it is saved).
    pub(super) async fn evaluate_after(
        &self,
        key: &OrderKey,
        rider: &mut Operation,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        rider.follow_up = false;
        rider.unsaved = true;
        match self.evaluate_with(key, None, Some(rider), now).await {
            // An evaluation that had nothing to decide saved nothing: the operation alone.
            Ok(_) if rider.unsaved => self.save(rider, now).await,
            Ok(_) => Ok(true),
            Err(AppError::Store(StoreError::Conflict { pk, sk })) if is_key_of(rider, &pk, &sk) => {
                Ok(false)
            }
            Err(e) => {
                // Keep the end even when the follow-up fails; the sweep follows up again.
                rider.follow_up = true;
                let _ = self.save(rider, now).await;
                Err(e)
            }
        }
    }

    async fn evaluate_with(
        &self,
        key: &OrderKey,
        new_facts: Option<&ErpOrder>,
        mut rider: Option<&mut Operation>,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let mut last = None;
        for _ in 0..5 {
            match self
                .evaluate_once(key, new_facts, rider.as_deref_mut(), now)
                .await
            {
                Ok(Some(planned)) => return Ok(planned),
                Ok(None) => {}
                Err(AppError::Store(e @ StoreError::Conflict { .. })) => last = Some(e),
                Err(e) => return Err(e),
            }
            // A conflict on the rider itself is final: its claim was taken over.
            if let (Some(r), Some(StoreError::Conflict { pk, sk })) = (rider.as_deref(), &last)
                && is_key_of(r, pk, sk)
            {
                break;
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::Conflict {
                pk: key.pk(),
                sk: "ORDER".into(),
            })
            .into())
    }

    /// One attempt; `None` when someone else saved the order meanwhile (evaluate again).
    async fn evaluate_once(
        &self,
        key: &OrderKey,
        new_facts: Option<&ErpOrder>,
        rider: Option<&mut Operation>,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, AppError> {
        let before = self.repo().order(key, now).await?;
        let mut rec = before
            .clone()
            .unwrap_or_else(|| OrderRecord::new(key.clone(), now));
        if let Some(f) = new_facts {
            rec.facts = Some(f.clone());
        }
        let Some(facts) = rec.facts.clone() else {
            return Ok(Some(0));
        };
        let Some(cfg) = self.method_for(key, &facts) else {
            return Ok(Some(0)); // not a payment method paybridge handles
        };
        // The ERP's payment, else the one made on paybridge's payment link (§3.6), which the
        // engine then sees as the order's.
        let pid = rec.payment_id().map(str::to_string);
        let facts = match (&facts.psp_payment_id, &pid) {
            (None, Some(p)) => ErpOrder {
                psp_payment_id: Some(p.clone()),
                ..facts
            },
            _ => facts,
        };
        let ridden = rider.as_deref();
        let Known {
            view: psp_view,
            ops,
            events,
        } = self
            .view_and_ledger(
                key,
                cfg,
                &mut rec,
                before.as_ref(),
                pid.as_deref(),
                ridden,
                now,
            )
            .await?;
        track_unreadable(&mut rec, psp_view.is_some(), pid.is_some(), now);
        let first_seen = *rec.first_seen_at.get_or_insert(now);
        let decision = engine::decide(&Input {
            key,
            order: &facts,
            psp: psp_view.as_ref(),
            ledger: &ops,
            config: Some(cfg),
            now,
            first_seen,
            hands_off: rec.hands_off_since,
        });
        rec.recheck_at = decision.recheck_at;
        let changed = set_flags(&mut rec, before.as_ref(), decision.flags, now);
        let new_ops = new_operations(key, decision.plans, &ops, now);
        let commit = Commit {
            key,
            rec: changed.then_some(&rec),
            new_ops: &new_ops,
            notes: decision.notes,
            rider,
        };
        if let Some(version) = self.commit_evaluation(commit, now).await? {
            rec.version = version;
        }
        self.after_commit(key, &mut rec, &new_ops, now).await?;
        match (pid.is_some(), psp_view.is_some()) {
            // The PSP could not be read: evaluate again later.
            (true, false) => {
                let since = rec.psp_unreadable_since;
                let delay = psp_recheck_delay(self.settings.psp_recheck, since, now);
                let job = Job::Evaluate { order_pk: key.pk() };
                self.queue.send(&job, delay, now.timestamp_millis()).await?;
            }
            // The PSP events read before the fresh view are reflected in it: mark them.
            (_, true) => self.mark_applied(key, events, now).await?,
            (false, false) => {}
        }
        Ok(Some(new_ops.len()))
    }

    /// The PSP view and the ledger the decision is made on, and the pending PSP events the
    /// view reflects. The view is the stored one while nothing can have moved the payment
    /// behind our back ([`super::psp_view`]), else a fresh read, which is stored in `rec`.
    #[allow(clippy::too_many_arguments)]
    async fn view_and_ledger(
        &self,
        key: &OrderKey,
        cfg: &MethodConfig,
        rec: &mut OrderRecord,
        before: Option<&OrderRecord>,
        pid: Option<&str>,
        rider: Option<&Operation>,
        now: DateTime<Utc>,
    ) -> Result<Known, AppError> {
        let repo = self.repo();
        let Some(pid) = pid else {
            return Ok(Known {
                view: None,
                ops: self.ledger(key, rider, now).await?,
                events: Vec::new(),
            });
        };
        // A stored record whose facts name this payment was linked to it before it was saved.
        let linked = before.and_then(OrderRecord::payment_id) == Some(pid);
        if !linked {
            repo.link_payment(&key.tenant, pid, key, now).await?;
        }
        // PSP events waiting for this payment are read before the PSP view: the view reflects
        // them. One that arrives again later changes its version and stays unapplied.
        let known = self.known(key, pid, rec.psp.as_ref(), rider, now).await?;
        if known.view.is_some() {
            return Ok(known);
        }
        let view = self.read_psp(key, cfg, pid).await;
        if view.is_some() {
            rec.psp = view.clone();
        }
        // The ledger read after the view, so an operation finished meanwhile is seen as done.
        Ok(Known {
            view,
            ops: self.ledger(key, rider, now).await?,
            events: known.events,
        })
    }

    /// The PSP's view of the payment, `None` when the PSP cannot be read now.
    async fn read_psp(&self, key: &OrderKey, cfg: &MethodConfig, pid: &str) -> Option<PspPayment> {
        match self.psp.fetch(cfg, pid).await {
            Ok(p) => Some(p),
            Err(e) => {
                // Decide what can be decided without it, and come back: nothing else may
                // evaluate this order again (the ERP lists changes only).
                tracing::warn!(order = %key, error = %e, "PSP fetch failed, evaluating again later");
                None
            }
        }
    }

    /// Saves what the evaluation decided in one commit: the record when it changed, each new
    /// operation with its "planned" line, the decision's notes, and the rider with the lines of
    /// its end. Returns the record's new version when it was written. A conflict (someone
    /// saved the record or planned the same operation meanwhile) saves nothing.
    async fn commit_evaluation(
        &self,
        c: Commit<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        // The record and the rider first (their versions come back at these places), then the
        // history lines, then each new operation beside its "planned" line.
        let mut writes = Vec::new();
        if let Some(rec) = c.rec {
            writes.push(Repo::order_write(rec)?);
        }
        let mut lines: Vec<HistoryEntry> = c
            .notes
            .into_iter()
            .map(|n| line(now, None, n, None))
            .collect();
        if let Some(op) = c.rider.as_deref() {
            writes.push(Repo::op_update(op)?);
            for t in &op.unsaved_history {
                let what = t.what.clone();
                lines.push(line(t.at, Some(&op.id), what, t.reference.clone()));
            }
        }
        for entry in &lines {
            writes.push(Write::Insert(Repo::history_item(c.key, entry)?));
        }
        let mut planned = Vec::new();
        for op in c.new_ops {
            let what = format!("planned {:?}", op.plan.purpose);
            let entry = line(now, Some(&op.id), what, None);
            // A revived operation (over a cancelled one) is an update at its version.
            planned.push(if op.version == 0 {
                Repo::op_insert(op)?
            } else {
                Repo::op_update(op)?
            });
            planned.push(Write::Insert(Repo::history_item(c.key, &entry)?));
        }
        if writes.len() + planned.len() > MAX_COMMIT_WRITES {
            // More than one transaction holds: the new operations, each with its line, go
            // first in parts; an evaluation retried after a conflict finds them in the ledger.
            for part in planned.chunks(MAX_COMMIT_WRITES / 2 * 2) {
                self.repo().commit(part, now).await?;
            }
        } else {
            writes.append(&mut planned);
        }
        if writes.is_empty() {
            return Ok(None);
        }
        let versions = self.repo().commit(&writes, now).await?;
        if let Some(op) = c.rider {
            op.version = versions[usize::from(c.rec.is_some())];
            op.unsaved = false;
            op.unsaved_history.clear();
        }
        Ok(c.rec.map(|_| versions[0]))
    }

    /// After the evaluation's commit: queues the new operations and tells new errors.
    async fn after_commit(
        &self,
        key: &OrderKey,
        rec: &mut OrderRecord,
        new_ops: &[Operation],
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        for op in new_ops {
            let job = Job::RunOp {
                order_pk: key.pk(),
                op_id: op.id.clone(),
            };
            self.enqueue(job, now).await?;
        }
        self.notify_new_errors(rec, now).await
    }

    /// Marks the events the fresh PSP view reflects as applied.
    async fn mark_applied(
        &self,
        key: &OrderKey,
        events: Vec<EventRecord>,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        for ev in events {
            match self.repo().mark_event_applied(&ev, now).await {
                Ok(()) => {
                    let what = format!("PSP event {} applied", ev.event);
                    self.history(key, now, None, what, None).await?
                }
                // It came again after it was read: evaluate once more for it.
                Err(e) if e.is_conflict() => {
                    self.enqueue(Job::apply_event(ev.pk(), ev.sk()), now)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Tells the operator about open errors not told yet, then remembers them as told. The
    /// flags are saved first and the "told" mark after the e-mail: a crash in between sends the
    /// e-mail twice rather than never; a failed e-mail is tried again at the next evaluation.
    pub(super) async fn notify_new_errors(
        &self,
        rec: &mut OrderRecord,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let key = rec.key.clone();
        let pending: Vec<Flag> = rec
            .open_errors()
            .filter(|f| !rec.notified.contains(&f.code))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        for f in pending {
            self.history(
                &key,
                now,
                None,
                format!("error {}: {}", f.code, f.message),
                None,
            )
            .await?;
            let problem = Problem {
                tenant: key.tenant.clone(),
                order_id: key.order_id.clone(),
                code: f.code.clone(),
                message: f.message.clone(),
                action: engine::problems::action_for(&f.code).to_string(),
            };
            match self.notifier.notify(&problem).await {
                Ok(()) => rec.notified.push(f.code),
                Err(e) => tracing::warn!(order = %key, error = %e, "notification failed"),
            }
        }
        match self.repo().save_order(rec, now).await {
            Ok(v) => rec.version = v,
            // Someone else saved meanwhile: whoever evaluates next tells what is still untold.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// What one evaluation saves together ([`App::commit_evaluation`]).
struct Commit<'a> {
    key: &'a OrderKey,
    /// The record, when it changed.
    rec: Option<&'a OrderRecord>,
    new_ops: &'a [Operation],
    notes: Vec<String>,
    rider: Option<&'a mut Operation>,
}

/// The decision's plans as operations, less those in the ledger already. A plan whose
/// operation was cancelled (never started, the order was out of automation) takes its place:
/// it is written over the cancelled one (at its version), as if that had never been.
fn new_operations(
    key: &OrderKey,
    plans: Vec<crate::ledger::Plan>,
    ledger: &[Operation],
    now: DateTime<Utc>,
) -> Vec<Operation> {
    let mut out = Vec::new();
    for plan in plans {
        let mut op = Operation::new(key, plan, now);
        match ledger.iter().find(|o| o.id == op.id) {
            None => {}
            Some(old) if old.status == crate::ledger::OpStatus::Cancelled => {
                op.version = old.version
            }
            Some(_) => continue,
        }
        out.push(op);
    }
    out
}

/// Sets the decision's flags on the record (an error that went away, or was marked solved, is
/// told again when it comes back); `true` when the record changed since `before`, then its
/// `updated_at` is now.
fn set_flags(
    rec: &mut OrderRecord,
    before: Option<&OrderRecord>,
    flags: Vec<Flag>,
    now: DateTime<Utc>,
) -> bool {
    rec.flags = flags;
    rec.solved
        .retain(|c| rec.flags.iter().any(|f| &f.code == c));
    let open: Vec<String> = rec.open_errors().map(|f| f.code.clone()).collect();
    rec.notified.retain(|c| open.contains(c));
    if before.is_some_and(|b| same_content(b, rec)) {
        return false; // nothing to write: `updated_at` stays the last change
    }
    rec.updated_at = now;
    true
}

/// A line of the order's history.
fn line(
    at: DateTime<Utc>,
    op_id: Option<&str>,
    what: String,
    reference: Option<String>,
) -> HistoryEntry {
    HistoryEntry {
        at,
        op_id: op_id.map(str::to_string),
        what,
        reference,
    }
}

/// Whether `pk`/`sk` is the operation's item.
fn is_key_of(op: &Operation, pk: &str, sk: &str) -> bool {
    Repo::op_update(op).is_ok_and(|w| w.key() == (pk, sk))
}

/// Whether two records hold the same facts, view, flags and marks (time and version aside).
fn same_content(a: &OrderRecord, b: &OrderRecord) -> bool {
    a.facts == b.facts
        && a.psp == b.psp
        && a.flags == b.flags
        && a.solved == b.solved
        && a.notified == b.notified
        && a.psp_unreadable_since == b.psp_unreadable_since
        && a.first_seen_at == b.first_seen_at
        && a.hands_off_since == b.hands_off_since
        && a.recheck_at == b.recheck_at
}

/// Remembers since when the order's payment has been unreadable (`read`: a view was had).
fn track_unreadable(rec: &mut OrderRecord, read: bool, has_payment: bool, now: DateTime<Utc>) {
    if read {
        rec.psp_unreadable_since = None;
    } else if has_payment {
        rec.psp_unreadable_since.get_or_insert(now);
    }
}

/// The longest wait before an order whose payment cannot be read is evaluated again.
pub const MAX_PSP_RECHECK: chrono::Duration = chrono::Duration::hours(6);

/// When the payment cannot be read: evaluate again after as long as it has been unreadable
/// (so the waits double), at least `base`, at most [`MAX_PSP_RECHECK`]. A payment the PSP does
/// not know (a forged or mistyped id) is read a few times an hour at first and then four
/// times a day, not once a minute forever.
fn psp_recheck_delay(
    base: chrono::Duration,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> std::time::Duration {
    let waited = since.map_or(chrono::Duration::zero(), |s| now - s);
    waited
        .max(base)
        .min(MAX_PSP_RECHECK)
        .to_std()
        .unwrap_or_default()
}
