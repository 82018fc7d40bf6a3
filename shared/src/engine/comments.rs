//! behaviour.md §4: every action leaves one ERP comment, every error one flag and one comment,
//! and what needed a human stays an error until an operator marks it solved.

use super::{Cx, Problem, Severity};
use crate::ledger::{DocKind, ErpWrite, OpStatus, Purpose};

/// Comment prefix of a release with shipping lock; the reason follows.
pub(super) const LOCKED: &str = "released WITH SHIPPING LOCK: ";

impl Cx<'_, '_> {
    /// An order comment, stamped with the decision's time.
    pub(super) fn comment(&self, text: &str) -> ErpWrite {
        ErpWrite::Comment {
            text: format!(
                "paybridge {}: {text}",
                self.input.now.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }

    /// Records a flag; an error also gets one ERP comment (once per code).
    pub(super) fn problem(&mut self, problem: Problem) {
        let flag = problem.flag();
        if self.out.flags.iter().any(|f| f.code == flag.code) {
            return;
        }
        if flag.severity == Severity::Error {
            let order_id = self.order().order_id.clone();
            let c = self.comment(&format!("ERROR {}", flag.message));
            self.plan(
                DocKind::Order,
                &format!("{order_id}:{}", flag.code),
                Purpose::Problem,
                None,
                vec![c],
            );
        }
        self.out.flags.push(flag);
    }

    /// Every operation that needed a human stays an error until solved.
    pub(super) fn failed_ops(&mut self) {
        let link = self
            .input
            .config
            .is_some_and(|c| c.mode == crate::config::Mode::Link);
        if (self.order().is_manual() && !link) || self.input.config.is_none() {
            return;
        }
        // A release with shipping lock stays an error until an operator marks it solved.
        if let Some(op) =
            self.input.ledger.iter().find(|o| {
                o.plan.purpose == Purpose::ReleaseLocked && o.status != OpStatus::Cancelled
            })
        {
            let reason = op
                .plan
                .erp
                .iter()
                .find_map(|w| match w {
                    ErpWrite::Comment { text } => {
                        text.split_once(LOCKED).map(|(_, r)| r.to_string())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "authorization check failed".into());
            self.problem(Problem::AuthorizationCheck(reason));
        }
        for op in self
            .input
            .ledger
            .iter()
            .filter(|o| o.status == OpStatus::Failed)
        {
            self.problem(Problem::OpFailed {
                op: op.id.rsplit('/').take(2).collect::<Vec<_>>().join("@"),
                purpose: op.plan.purpose,
                doc: op.plan.doc_id.clone(),
                why: op.last_error.as_deref().unwrap_or("unknown").to_string(),
            });
        }
    }
}
