//! `paybridge order …`: an operator's action on one order, on the same store the running
//! `paybridge serve` uses (the SQLite file of the configuration, or DynamoDB / SQS with
//! `--store dynamodb --queue sqs`). The work the action causes (the ERP comment of a hands-off
//! switch, the operations of an order put back) is enqueued for the running server's worker.
//!
//! | command | what it does |
//! |---|---|
//! | `order hands-off ORDER` | out of automation: unstarted operations cancelled, the switch commented, nothing planned |
//! | `order hands-on ORDER` | back into automation: commented, then planned as the order needs |
//! | `order solved ORDER` | the problem marked solved: the error mark cleared, nothing else |
//! | `order resend-link ORDER` | the payment link e-mailed again (the same link: never a second payment); refused when paid |

use crate::cli::{OrderCommand, OrderTarget};
use crate::serve;
use crate::startup::{self, StartError};
use chrono::Utc;
use paybridge_core::app::{AppError, Resend};
use paybridge_core::config::Config;
use paybridge_core::ledger::OrderKey;

/// Why an order command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    App(#[from] AppError),
    /// `--erp` names no connection, or several exist and none is named.
    #[error("{0}")]
    Connection(String),
    #[error(
        "order {order} of connection {erp:?} is not known to paybridge (it is known once a poll has seen it)"
    )]
    UnknownOrder { order: String, erp: String },
    /// Nothing to re-send, with the reason.
    #[error("order {order}: {why}")]
    NoResend { order: String, why: String },
}

impl OrderError {
    /// 2 for unusable arguments or configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            OrderError::Start(e) => e.exit_code(),
            OrderError::Connection(_) => 2,
            OrderError::App(_) | OrderError::UnknownOrder { .. } | OrderError::NoResend { .. } => 1,
        }
    }
}

/// Runs one order command; the line to print on success.
pub async fn run(command: OrderCommand) -> Result<String, OrderError> {
    let (action, target) = match command {
        OrderCommand::HandsOff(t) => (Action::HandsOff, t),
        OrderCommand::HandsOn(t) => (Action::HandsOn, t),
        OrderCommand::Solved(t) => (Action::Solved, t),
        OrderCommand::ResendLink(t) => (Action::ResendLink, t),
    };
    let prepared = startup::prepare(&target.backend.config)?;
    let key = order_key(&prepared.config, &target)?;
    let (app, _) = serve::open_app(prepared, &target.backend).await?;
    let now = Utc::now();
    let changed = match action {
        Action::HandsOff => app.set_hands_off(&key, true, now).await?,
        Action::HandsOn => app.set_hands_off(&key, false, now).await?,
        Action::Solved => app.mark_solved(&key, now).await?,
        Action::ResendLink => return resend(&app, key, now).await,
    };
    if !changed && !known(&app, &key).await? {
        return Err(OrderError::UnknownOrder {
            order: key.order_id,
            erp: key.conn,
        });
    }
    let what = match (action, changed) {
        (Action::HandsOff, true) => "taken out of automation (hands-off)",
        (Action::HandsOff, false) => "was already out of automation: nothing changed",
        (Action::HandsOn, true) => "put back into automation",
        (Action::HandsOn, false) => "was not out of automation: nothing changed",
        (Action::Solved, _) => "problems marked solved",
        (Action::ResendLink, _) => "payment link e-mailed again",
    };
    Ok(format!("order {} ({}): {what}", key.order_id, key.conn))
}

/// `order resend-link`: the same link e-mailed again, or why not.
async fn resend(
    app: &paybridge_core::app::App,
    key: OrderKey,
    now: chrono::DateTime<Utc>,
) -> Result<String, OrderError> {
    match app.resend_payment_link(&key, now).await? {
        Resend::Queued(_) => Ok(format!(
            "order {} ({}): the payment link is e-mailed again (the same link: it can never be paid twice)",
            key.order_id, key.conn
        )),
        Resend::Refused(why) => Err(OrderError::NoResend {
            order: key.order_id,
            why,
        }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    HandsOff,
    HandsOn,
    Solved,
    ResendLink,
}

async fn known(app: &paybridge_core::app::App, key: &OrderKey) -> Result<bool, AppError> {
    let repo = paybridge_core::store::repo::Repo::new(app.store.as_ref());
    Ok(repo.order(key, Utc::now()).await?.is_some())
}

/// The order's key: the tenant, the named connection (or the only one), the order number.
fn order_key(config: &Config, t: &OrderTarget) -> Result<OrderKey, OrderError> {
    let ids: Vec<&str> = config.erp.iter().map(|c| c.id.as_str()).collect();
    let conn = match (&t.erp, ids.as_slice()) {
        (Some(e), _) if ids.contains(&e.as_str()) => e.as_str(),
        (Some(e), _) => {
            return Err(OrderError::Connection(format!(
                "--erp {e:?}: no such [[erp]] connection (configured: {})",
                ids.join(", ")
            )));
        }
        (None, [only]) => only,
        (None, _) => {
            return Err(OrderError::Connection(format!(
                "several [[erp]] connections: name one with --erp ({})",
                ids.join(", ")
            )));
        }
    };
    let order = t.order.trim();
    if order.is_empty() {
        return Err(OrderError::Connection("the order number is empty".into()));
    }
    Ok(OrderKey::new(&config.tenant.id, conn, order))
}
