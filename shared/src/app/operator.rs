//! What an operator does to an order: mark its problem solved; take it out of automation and
//! put it back (hands-off); list the orders with open errors (dashboard, error page).

use super::{App, AppError};
use crate::ledger::{OpStatus, OrderKey, Purpose};
use crate::store::repo::OrderRecord;
use chrono::{DateTime, Utc};

impl App {
    /// Operator action "problem solved": clears the error mark, does nothing else.
    pub async fn mark_solved(&self, key: &OrderKey, now: DateTime<Utc>) -> Result<bool, AppError> {
        let repo = self.repo();
        let Some(mut rec) = repo.order(key, now).await? else {
            return Ok(false);
        };
        let codes: Vec<String> = rec.open_errors().map(|f| f.code.clone()).collect();
        rec.solved.extend(codes);
        repo.save_order(&rec, now).await?;
        self.history(key, now, None, "problem marked solved".into(), None)
            .await?;
        Ok(true)
    }

    /// Takes the order out of automation (`off = true`) or puts it back. Out: operations that
    /// have not started are cancelled now (a worker that claimed one first lets it finish), and
    /// the evaluation comments the switch and plans nothing else. Back: the evaluation comments
    /// it and plans what the order needs now. `false` when the order is unknown or already in
    /// that state — but the cancelling and the evaluation run again even then, so an operator
    /// who repeats a switch that failed half-way (the process died after saving it) completes
    /// it. The saved switch also asks for an evaluation at once (`recheck_at`), for the sweep
    /// should nobody repeat it.
    pub async fn set_hands_off(
        &self,
        key: &OrderKey,
        off: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let repo = self.repo();
        let Some(mut rec) = repo.order(key, now).await? else {
            return Ok(false);
        };
        let already = rec.hands_off_since.is_some() == off;
        if !already {
            // Whole seconds: the switch's comment operation is named by them.
            let since = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
            rec.hands_off_since = off.then_some(since);
            rec.recheck_at = Some(now);
            rec.updated_at = now;
            repo.save_order(&rec, now).await?;
            let what = if off {
                "taken out of automation by an operator (hands-off)"
            } else {
                "put back into automation by an operator"
            };
            self.history(key, now, None, what.into(), None).await?;
        }
        if off {
            self.cancel_unstarted(key, now).await?;
        }
        self.evaluate(key, None, now).await?;
        Ok(!already)
    }

    /// Cancels every operation of the order that has not started and is not claimed.
    async fn cancel_unstarted(&self, key: &OrderKey, now: DateTime<Utc>) -> Result<(), AppError> {
        for mut op in self.repo().ops(key, now).await? {
            let claimed = op.status == OpStatus::Running && op.lease_until.is_some_and(|u| u > now);
            let switch = matches!(op.plan.purpose, Purpose::HandsOff | Purpose::HandsOn);
            if claimed || switch || !op.cancel("the order is out of automation (hands-off)", now) {
                continue;
            }
            // `false`: a worker claimed it meanwhile; it cancels it itself if it had not started.
            self.save(&mut op, now).await?;
        }
        Ok(())
    }

    /// Orders with open errors (dashboard / error page).
    pub async fn problem_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderRecord>, AppError> {
        Ok(self.repo().problem_orders(self.tenant(), 500, now).await?)
    }
}
