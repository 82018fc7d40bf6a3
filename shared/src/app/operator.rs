//! What an operator does to an order: mark its problem solved; list the orders with open
//! errors (dashboard, error page).

use super::{App, AppError};
use crate::ledger::OrderKey;
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

    /// Orders with open errors (dashboard / error page).
    pub async fn problem_orders(&self, now: DateTime<Utc>) -> Result<Vec<OrderRecord>, AppError> {
        Ok(self.repo().problem_orders(self.tenant(), 500, now).await?)
    }
}
