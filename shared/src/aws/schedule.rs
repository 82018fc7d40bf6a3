//! The ERP poller's event: one poll cycle per schedule tick.

use super::*;

/// What invoked the poller. EventBridge Scheduler (SAM `ScheduleV2`) delivers the schedule's
/// `Input` as it is: ours (infra/template.yaml) is
/// `{"source":"paybridge.schedule","scheduled_time":"<aws.scheduler.scheduled-time>","execution_id":"<aws.scheduler.execution-id>","attempt":"<aws.scheduler.attempt-number>"}`,
/// with the placeholders filled in by the scheduler. A classic EventBridge rule (SAM
/// `Schedule`) delivers its "Scheduled Event" envelope instead. Both just mean "poll now"; the
/// fields are for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleTrigger {
    /// A classic rule's scheduled event.
    Rule {
        id: Option<String>,
        time: Option<DateTime<Utc>>,
    },
    /// EventBridge Scheduler, or any other payload (a manual invoke, `{}`).
    Scheduler {
        scheduled_time: Option<String>,
        execution_id: Option<String>,
        attempt: Option<String>,
    },
}

impl ScheduleTrigger {
    /// Classifies any JSON payload; never fails.
    pub fn from_event(event: &Value) -> ScheduleTrigger {
        if let Ok(rule) = serde_json::from_value::<EventBridgeEvent>(event.clone()) {
            return ScheduleTrigger::Rule {
                id: rule.id,
                time: rule.time,
            };
        }
        let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_string);
        ScheduleTrigger::Scheduler {
            scheduled_time: field("scheduled_time"),
            execution_id: field("execution_id"),
            attempt: field("attempt"),
        }
    }
}

/// One poll cycle (the `erp-poller` function): [`App::poll_cycle`] at `now`, logged. An error
/// fails the invocation (visible in the function's Errors alarm); the next tick polls again —
/// the watermark only advances after the work found is durably planned.
pub async fn handle_schedule(app: &App, now: DateTime<Utc>) -> Result<PollReport, AppError> {
    let report = app.poll_cycle(now).await?;
    tracing::info!(
        orders_seen = report.orders_seen,
        ops_planned = report.ops_planned,
        held_quiet_hours = report.held_quiet_hours,
        held_lease = report.held_lease,
        swept_ops = report.swept_ops,
        swept_events = report.swept_events,
        "poll cycle done"
    );
    Ok(report)
}
