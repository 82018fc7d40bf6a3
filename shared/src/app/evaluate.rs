//! Evaluation of one order: the facts (new from a poll or the stored ones), the PSP view (the
//! stored one while it is known to be current, else one fresh read), the ledger, the engine's
//! decision; new operations inserted and queued, the record saved when it changed, new errors
//! told to the operator once.

use super::psp_view::Known;
use super::{App, AppError};
use crate::config::MethodConfig;
use crate::engine::{self, Flag, Input};
use crate::ledger::{Operation, OrderKey, Plan};
use crate::model::{ErpOrder, PspPayment};
use crate::notify::Problem;
use crate::queue::Job;
use crate::store::StoreError;
use crate::store::repo::{EventRecord, OrderRecord};
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
        for _ in 0..5 {
            if let Some(planned) = self.evaluate_once(key, new_facts.as_ref(), now).await? {
                return Ok(planned);
            }
        }
        Err(StoreError::Conflict {
            pk: key.pk(),
            sk: "ORDER".into(),
        }
        .into())
    }

    /// One attempt; `None` when someone else saved the order meanwhile (evaluate again).
    async fn evaluate_once(
        &self,
        key: &OrderKey,
        new_facts: Option<&ErpOrder>,
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
        let pid = facts.psp_payment_id.clone().filter(|p| !p.is_empty());
        let Known {
            view: psp_view,
            ops,
            events,
        } = self
            .view_and_ledger(key, cfg, &mut rec, before.as_ref(), pid.as_deref(), now)
            .await?;
        let decision = engine::decide(&Input {
            key,
            order: &facts,
            psp: psp_view.as_ref(),
            ledger: &ops,
            config: Some(cfg),
            now,
        });
        let planned = self.insert_plans(key, decision.plans, now).await?;
        for note in decision.notes {
            self.history(key, now, None, note, None).await?;
        }
        if !self
            .save_flags(&mut rec, before.as_ref(), decision.flags, now)
            .await?
        {
            return Ok(None);
        }
        self.notify_new_errors(&mut rec, now).await?;
        if pid.is_some() && psp_view.is_none() {
            let delay = self.settings.psp_recheck.to_std().unwrap_or_default();
            self.queue
                .send(
                    &Job::Evaluate { order_pk: key.pk() },
                    delay,
                    now.timestamp_millis(),
                )
                .await?;
        }
        // The PSP events read before the fresh view are reflected in it: mark them.
        if psp_view.is_some() {
            self.mark_applied(key, events, now).await?;
        }
        Ok(Some(planned))
    }

    /// The PSP view and the ledger the decision is made on, and the pending PSP events the
    /// view reflects. The view is the stored one while nothing can have moved the payment
    /// behind our back ([`super::psp_view`]), else a fresh read, which is stored in `rec`.
    async fn view_and_ledger(
        &self,
        key: &OrderKey,
        cfg: &MethodConfig,
        rec: &mut OrderRecord,
        before: Option<&OrderRecord>,
        pid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Known, AppError> {
        let repo = self.repo();
        let Some(pid) = pid else {
            return Ok(Known {
                view: None,
                ops: repo.ops(key, now).await?,
                events: Vec::new(),
            });
        };
        // A stored record whose facts name this payment was linked to it before it was saved.
        let linked = before
            .and_then(|b| b.facts.as_ref())
            .and_then(|f| f.psp_payment_id.as_deref())
            == Some(pid);
        if !linked {
            repo.link_payment(&key.tenant, pid, key, now).await?;
        }
        // PSP events waiting for this payment are read before the PSP view: the view reflects
        // them. One that arrives again later changes its version and stays unapplied.
        let known = self.known(key, pid, rec.psp.as_ref(), now).await?;
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
            ops: repo.ops(key, now).await?,
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

    /// Inserts the decision's plans as operations (a plan already in the ledger is refused by
    /// the store) and queues each new one. Returns how many were new.
    async fn insert_plans(
        &self,
        key: &OrderKey,
        plans: Vec<Plan>,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let mut planned = 0;
        for plan in plans {
            let op = Operation::new(key, plan, now);
            if !self.repo().insert_op(&op, now).await? {
                continue;
            }
            planned += 1;
            let what = format!("planned {:?}", op.plan.purpose);
            self.history(key, now, Some(&op.id), what, None).await?;
            let job = Job::RunOp {
                order_pk: key.pk(),
                op_id: op.id.clone(),
            };
            self.enqueue(job, now).await?;
        }
        Ok(planned)
    }

    /// Saves the order's facts, view and current flags unless nothing changed since `before`;
    /// `false` when someone else saved it meanwhile.
    async fn save_flags(
        &self,
        rec: &mut OrderRecord,
        before: Option<&OrderRecord>,
        flags: Vec<Flag>,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        rec.flags = flags;
        rec.solved
            .retain(|c| rec.flags.iter().any(|f| &f.code == c));
        // An error that went away (or was marked solved) is told again when it comes back.
        let open: Vec<String> = rec.open_errors().map(|f| f.code.clone()).collect();
        rec.notified.retain(|c| open.contains(c));
        if before.is_some_and(|b| same_content(b, rec)) {
            return Ok(true); // nothing to write: `updated_at` stays the last change
        }
        rec.updated_at = now;
        match self.repo().save_order(rec, now).await {
            Ok(v) => rec.version = v,
            Err(e) if e.is_conflict() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        Ok(true)
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

/// Whether two records hold the same facts, view, flags and marks (time and version aside).
fn same_content(a: &OrderRecord, b: &OrderRecord) -> bool {
    a.facts == b.facts
        && a.psp == b.psp
        && a.flags == b.flags
        && a.solved == b.solved
        && a.notified == b.notified
}
