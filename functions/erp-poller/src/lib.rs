//! `erp-poller`: the Lambda function an EventBridge Scheduler schedule (SAM `ScheduleV2`)
//! invokes every few minutes to run one poll cycle ([`paybridge_core::aws::handle_schedule`]:
//! read the ERP changes, plan operations, sweep lost jobs).
//!
//! The payload is taken as any JSON: EventBridge Scheduler delivers the schedule's configured
//! `Input` (ours names the scheduled time and execution id), while a classic EventBridge rule
//! delivers its "Scheduled Event" envelope; both mean "poll now", and
//! [`paybridge_core::aws::ScheduleTrigger`] only tells them apart for the log.
//!
//! [`handler`] is a plain async function: tests call it with a `LambdaEvent` and a default
//! `Context`; `main` builds logging and the app once per execution environment.

use chrono::Utc;
use lambda_runtime::{Error, LambdaEvent};
use paybridge_core::app::App;
use paybridge_core::aws::{ScheduleTrigger, handle_schedule};
use serde_json::{Value, json};

/// One schedule tick → one poll cycle. Answers the poll report (shown by `cargo lambda invoke`;
/// the scheduler ignores it). A failed cycle fails the invocation; the next tick polls again.
pub async fn handler(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let trigger = ScheduleTrigger::from_event(&event.payload);
    tracing::info!(?trigger, request_id = %event.context.request_id, "schedule tick");
    let r = handle_schedule(app, Utc::now()).await?;
    Ok(json!({
        "orders_seen": r.orders_seen,
        "ops_planned": r.ops_planned,
        "held_quiet_hours": r.held_quiet_hours,
        "held_lease": r.held_lease,
        "swept_ops": r.swept_ops,
        "swept_rechecks": r.swept_rechecks,
        "swept_events": r.swept_events,
    }))
}
