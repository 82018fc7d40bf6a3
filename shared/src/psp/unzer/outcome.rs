//! What an Unzer reply means: the HTTP status and body of a money call mapped onto a
//! [`PspOutcome`] (the table in the parent module's doc), amounts verified against the request.

use super::*;

/// A payment or transaction read that failed before a refund sent anything.
pub(super) fn read_failed(e: PspError) -> PspOutcome {
    let message = format!("reading the payment before the refund failed, nothing sent: {e}");
    match e {
        PspError::Unavailable(_) => PspOutcome::Retryable { message },
        PspError::Auth(_) => auth_declined("PAYBRIDGE.AUTH".into(), &message),
        PspError::NotFound(_) | PspError::BadReply(_) | PspError::Unsupported(_) => {
            declined("PAYBRIDGE.REFUND_READ", message)
        }
    }
}

/// Checks that the reply echoes the amount and currency we sent (hyperswitch habit: every
/// capture/refund reply is checked against the request).
pub(super) fn verify_amount(reply: &WireReply, expect: Option<Money>) -> Result<(), String> {
    let Some(exp) = expect else { return Ok(()) };
    let currency = reply.currency.as_deref().unwrap_or("(none)");
    if currency != exp.currency().code() {
        return Err(format!(
            "reply currency {currency} differs from the {} we sent",
            exp.currency()
        ));
    }
    let got = reply
        .amount
        .as_ref()
        .ok_or_else(|| "reply has no amount".to_string())?
        .money(exp.currency())?;
    if got != exp {
        return Err(format!("reply amount {got} differs from the {exp} we sent"));
    }
    Ok(())
}

/// Maps one HTTP reply to a money call into an outcome (see the table in the module doc).
pub(super) fn classify(
    status: StatusCode,
    body: &str,
    expect: Option<Money>,
    path: &str,
) -> PspOutcome {
    match read_reply(status, body, path) {
        Ok(reply) => reply_outcome(status, &reply, expect, path),
        Err(outcome) => outcome,
    }
}

/// The body of a money call's reply, or the outcome its HTTP status alone (429, 5xx, 408) or
/// an unreadable body decides.
fn read_reply(status: StatusCode, body: &str, path: &str) -> Result<WireReply, PspOutcome> {
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(PspOutcome::Retryable {
            message: format!("POST {path}: HTTP 429, rate limited"),
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Err(PspOutcome::Unknown {
            message: format!("POST {path}: HTTP {code}; Unzer may have processed it"),
        });
    }
    serde_json::from_str(body).map_err(|e| {
        if status.is_success() {
            PspOutcome::Unknown {
                message: format!(
                    "POST {path}: unreadable HTTP {code} reply ({e}); Unzer may have processed it"
                ),
            }
        } else if matches!(code, 401 | 403) {
            auth_declined(format!("HTTP {code}"), "no readable error object")
        } else {
            declined(
                &format!("HTTP {code}"),
                format!("POST {path}: unreadable error reply"),
            )
        }
    })
}

/// What a readable reply says: its error object, an HTTP error without one, or the transaction
/// it names (success and pending only with the amount we sent, `expect`).
fn reply_outcome(
    status: StatusCode,
    reply: &WireReply,
    expect: Option<Money>,
    path: &str,
) -> PspOutcome {
    let code = status.as_u16();
    match reply.kind() {
        // Key/auth errors (php-sdk ApiResponseCodes API.710.000.002/.005/.007) or 401/403 (docs "Error handling").
        ReplyKind::Error { code: c, message }
            if c.starts_with("API.710.") || matches!(code, 401 | 403) =>
        {
            auth_declined(c, &message)
        }
        ReplyKind::Error { code: c, message } => PspOutcome::Declined { code: c, message },
        _ if matches!(code, 401 | 403) => auth_declined(format!("HTTP {code}"), "no error object"),
        _ if !status.is_success() => declined(
            &format!("HTTP {code}"),
            format!("POST {path}: HTTP {code} without an error object"),
        ),
        ReplyKind::Success { tx_id } | ReplyKind::Pending { tx_id } if !valid_tx_id(&tx_id) => {
            PspOutcome::Unknown {
                message: format!(
                    "POST {path}: HTTP {code} reply names {:?}, not an Unzer transaction id; \
                     not treated as done",
                    tx_id.chars().take(80).collect::<String>()
                ),
            }
        }
        ReplyKind::Unclear { tx_id: Some(tx_id) } if !valid_tx_id(&tx_id) => PspOutcome::Unknown {
            message: format!(
                "POST {path}: HTTP {code} reply names {:?}, not an Unzer transaction id",
                tx_id.chars().take(80).collect::<String>()
            ),
        },
        ReplyKind::Success { tx_id } => match verify_amount(reply, expect) {
            Ok(()) => PspOutcome::Done { tx_id },
            Err(m) => PspOutcome::Unknown {
                message: format!(
                    "POST {path}: {tx_id} reported success but {m}; not treated as done"
                ),
            },
        },
        ReplyKind::Pending { tx_id } | ReplyKind::Unclear { tx_id: Some(tx_id) } => {
            match verify_amount(reply, expect) {
                Ok(()) => PspOutcome::Pending { tx_id },
                Err(m) => PspOutcome::Unknown {
                    message: format!("POST {path}: {tx_id} pending but {m}"),
                },
            }
        }
        ReplyKind::Unclear { tx_id: None } => PspOutcome::Unknown {
            message: format!("POST {path}: HTTP {code} reply without transaction id or status"),
        },
    }
}

/// A fetched transaction's status: the reply's flags, else the payment list's status.
pub(super) fn tx_status_of(reply: &WireReply, tx: &TxRef) -> TxStatus {
    let has_flags =
        reply.is_success.is_some() || reply.is_pending.is_some() || reply.is_error.is_some();
    if has_flags { reply.status() } else { tx.status }
}

pub(super) fn call_kind(call: &PspCall) -> TxKind {
    match call {
        PspCall::Capture { .. } => TxKind::Charge,
        PspCall::Reverse { .. } => TxKind::CancelAuthorize,
        PspCall::Refund { .. } => TxKind::CancelCharge,
        PspCall::Shipment { .. } => TxKind::Shipment,
        PspCall::RequestPayment { .. } => TxKind::Authorize,
    }
}
