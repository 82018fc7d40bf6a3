//! Hands-off orders (seed 004, "slå av auto-capture for en ordre"): an operator takes one order
//! out of automation. While it is out, nothing is planned for it (operations that had not
//! started are cancelled by the worker, started ones finish); one ERP comment says so when it
//! goes out and one when it comes back, and the order shows a `hands_off` hint.
//!
//! The comments are operations whose document is `{order}:{since}` (the time it was taken
//! out, in seconds), so each switch is commented once however often the order is evaluated.

use super::{Cx, Problem};
use crate::ledger::{DocKind, OpStatus, Purpose};
use chrono::{DateTime, Utc};

impl Cx<'_, '_> {
    fn switch_doc(&self, since: DateTime<Utc>) -> String {
        format!("{}:{}", self.order().order_id, since.timestamp())
    }

    /// Out of automation since `since`: the comment (once) and the hint, nothing else.
    pub(super) fn hands_off(&mut self, since: DateTime<Utc>) {
        let doc = self.switch_doc(since);
        let c = self.comment("taken out of automation by an operator: paybridge plans nothing");
        self.plan(DocKind::Order, &doc, Purpose::HandsOff, None, vec![c]);
        self.problem(Problem::HandsOff { since });
    }

    /// Back in automation: one comment for each time it was taken out and not yet back.
    pub(super) fn back_on(&mut self) {
        let docs: Vec<String> = self
            .input
            .ledger
            .iter()
            .filter(|o| o.plan.purpose == Purpose::HandsOff && o.status != OpStatus::Cancelled)
            .map(|o| o.plan.doc_id.clone())
            .collect();
        for doc in docs {
            let c = self.comment("back in automation: paybridge handles the order again");
            self.plan(DocKind::Order, &doc, Purpose::HandsOn, None, vec![c]);
        }
    }
}
