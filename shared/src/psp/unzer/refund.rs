//! Refunds at Unzer: one charge is refunded per call, so a refund larger than any single
//! charge's rest is spread over the charges (in charge order, each part carrying the same
//! reference); parts already made under the reference are read first so a retried refund
//! sends only the remainder (see the parent module's doc for the whole contract).

use super::*;

impl UnzerPsp {
    /// Every charge cancel of the payment that carries `reference`, in the payment's order: GETs
    /// each `cancel-charge` transaction (the payment's list has no references).
    pub(super) async fn refund_parts(
        &self,
        t: &Target<'_>,
        view: &PaymentView,
        reference: &str,
    ) -> Result<Vec<RefundPart>, PspError> {
        let pid = view.payment.payment_id.as_str();
        let mut parts = Vec::new();
        for tx in view.txs.iter().filter(|x| x.kind == TxKind::CancelCharge) {
            let path = self.local_path(t, pid, &tx.url)?;
            let reply: WireReply = self.get_json(t, &path, pid).await?;
            if !reply.carries(reference) {
                continue;
            }
            parts.push(RefundPart {
                id: tx.id.clone(),
                charge: tx.parent_charge.clone(),
                amount: tx.amount,
                status: tx_status_of(&reply, tx),
            });
        }
        Ok(parts)
    }

    /// [`Psp::find_transaction`] for a spread refund: sums the parts carrying `reference` (see
    /// the contract there).
    pub(super) async fn find_refund(
        &self,
        t: &Target<'_>,
        view: &PaymentView,
        amount: Money,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let parts = self.refund_parts(t, view, reference).await?;
        let tally = RefundTally::of(&parts, amount.currency()).map_err(PspError::BadReply)?;
        let order = tally
            .counted
            .cmp_to(&amount)
            .map_err(|e| PspError::BadReply(e.to_string()))?;
        let tx = |id: &str, status| PspTransaction {
            at: None,
            id: id.to_string(),
            kind: TxKind::CancelCharge,
            status,
            amount,
            reference: Some(reference.to_string()),
        };
        if order.is_gt() {
            return Err(PspError::BadReply(format!(
                "cancels carrying our reference {reference} add up to {}, more than the {amount} refund: {}",
                tally.counted,
                list_parts(&parts)
            )));
        }
        if let Some(p) = &tally.pending {
            return Ok(Some(tx(p, TxStatus::Pending)));
        }
        if order.is_eq()
            && let Some(last) = &tally.last
        {
            return Ok(Some(tx(last, TxStatus::Success)));
        }
        if !tally.counted.is_positive()
            && let Some(e) = &tally.last_error
        {
            return Ok(Some(tx(e, TxStatus::Error)));
        }
        if tally.counted.is_positive() {
            tracing::debug!(
                payment = %view.payment.payment_id,
                refunded = %tally.counted,
                %amount,
                "refund partly done under this reference; the remainder may be sent"
            );
        }
        Ok(None)
    }

    /// A refund on a non-Paylater payment: reads what already carries `reference`, then cancels
    /// the remainder on the charges in order, one `…/charges/{chgId}/cancels` per part, each with
    /// the same `paymentReference` and reason code (php-sdk CancelService::cancelPaymentCharges;
    /// per part php-sdk CancelService::cancelCharge).
    pub(super) async fn refund_spread(
        &self,
        t: &Target<'_>,
        payment: &PspPayment,
        amount: Money,
        reason: crate::ledger::RefundReason,
        reference: &str,
    ) -> PspOutcome {
        let pid = payment.payment_id.as_str();
        let (parts, earlier) = match self.refund_remainder(t, pid, amount, reference).await {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let reason = transformers::reason_code(reason);
        let mut refunded: Vec<RefundPart> = earlier
            .into_iter()
            .filter(|p| p.status == TxStatus::Success)
            .collect();
        for (i, (charge, part)) in parts.iter().enumerate() {
            let body = match cancel_body(*part, Some(reason), reference) {
                Ok(b) => b,
                Err(e) => return declined("PAYBRIDGE.REQUEST", format!("request body: {e}")),
            };
            let planned = Planned {
                path: format!("/v1/payments/{pid}/charges/{charge}/cancels"),
                body,
                expect: Some(*part),
            };
            let outcome = self.post(t, &planned).await;
            let what = || part_progress(amount, &parts, i, &refunded);
            match part_done(outcome, refunded.is_empty(), what) {
                Ok(tx_id) => refunded.push(RefundPart {
                    id: tx_id,
                    charge: Some(charge.clone()),
                    amount: *part,
                    status: TxStatus::Success,
                }),
                Err(end) => return end,
            }
        }
        match refunded.last() {
            Some(last) => PspOutcome::Done {
                tx_id: last.id.clone(),
            },
            None => declined(
                "PAYBRIDGE.AMOUNTS",
                format!("refund of {amount}: no part sent"),
            ),
        }
    }

    /// Reads the payment and the parts already carrying `reference`, and plans the rest: the
    /// parts to send (charge id, amount) and the earlier parts, or the outcome when nothing is
    /// to be sent (already complete, a part still pending, a read failed, or declined).
    async fn refund_remainder(
        &self,
        t: &Target<'_>,
        pid: &str,
        amount: Money,
        reference: &str,
    ) -> Result<(Vec<(String, Money)>, Vec<RefundPart>), PspOutcome> {
        let view = self.view(t, pid).await.map_err(read_failed)?;
        let earlier = self
            .refund_parts(t, &view, reference)
            .await
            .map_err(read_failed)?;
        match plan_refund(&view, amount, &earlier)? {
            RefundPlan::Complete { tx_id } => {
                tracing::debug!(payment = pid, %tx_id, "refund already complete under this reference; nothing sent");
                Err(PspOutcome::Done { tx_id })
            }
            RefundPlan::Waiting { tx_id } => Err(PspOutcome::Pending { tx_id }),
            RefundPlan::Send(parts) => Ok((parts, earlier)),
        }
    }
}

/// The cancel id of a refund part that went through, else the outcome the refund ends with:
/// the plain outcome while nothing moved (`nothing_moved`), after earlier parts `Unknown` (the
/// rest may be sent again) or, for a decline, `PAYBRIDGE.REFUND_PARTIAL`; `what` describes the
/// refund's progress at this part.
fn part_done(
    outcome: PspOutcome,
    nothing_moved: bool,
    what: impl Fn() -> String,
) -> Result<String, PspOutcome> {
    match outcome {
        PspOutcome::Done { tx_id } => Ok(tx_id),
        // Not final yet: the rest waits until it is (reconciliation sees it pending).
        PspOutcome::Pending { tx_id } => Err(PspOutcome::Pending { tx_id }),
        PspOutcome::Unknown { message } => Err(PspOutcome::Unknown {
            message: format!("{}: outcome unknown: {message}", what()),
        }),
        // Nothing moved at all: the plain outcome.
        PspOutcome::Retryable { .. } | PspOutcome::Declined { .. } if nothing_moved => Err(outcome),
        // Parts went through: keep the in-flight mark, reconciliation finds them.
        PspOutcome::Retryable { message } => Err(PspOutcome::Unknown {
            message: format!("{}: not sent ({message}); send the rest again", what()),
        }),
        PspOutcome::Declined { code, message } => Err(declined(
            "PAYBRIDGE.REFUND_PARTIAL",
            format!(
                "{}: declined by Unzer ({code}: {message}); the refund is only partly done — refund the rest by hand",
                what()
            ),
        )),
    }
}

/// Where a spread refund of `amount` stands at part `i` of `parts`: that part, what is
/// refunded so far under the reference (`refunded`), and the parts not sent.
fn part_progress(
    amount: Money,
    parts: &[(String, Money)],
    i: usize,
    refunded: &[RefundPart],
) -> String {
    let (charge, part) = &parts[i];
    let not_sent = parts[i + 1..]
        .iter()
        .map(|(c, m)| format!("{m} on {c}"))
        .collect::<Vec<_>>();
    let refunded_sum = Money::sum(amount.currency(), refunded.iter().map(|p| &p.amount))
        .map_or_else(|e| e.to_string(), |m| m.to_string());
    format!(
        "refund of {amount}: part {} of {} ({part} on {charge}); refunded so far under this reference: {refunded_sum} ({}); not sent: {}",
        i + 1,
        parts.len(),
        list_parts(refunded),
        if not_sent.is_empty() {
            "nothing".into()
        } else {
            not_sent.join(", ")
        }
    )
}

/// One charge cancel carrying an operation's reference: a part of a (spread) refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefundPart {
    /// The cancel id (`s-cnl-N`).
    pub(super) id: String,
    /// The charge it refunds; `None` for a payment-level cancel.
    pub(super) charge: Option<String>,
    pub(super) amount: Money,
    pub(super) status: TxStatus,
}

impl fmt::Display for RefundPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.amount)?;
        if let Some(c) = &self.charge {
            write!(f, " on {c}")?;
        }
        if self.status != TxStatus::Success {
            write!(f, " ({:?})", self.status)?;
        }
        Ok(())
    }
}

pub(super) fn list_parts<'a>(parts: impl IntoIterator<Item = &'a RefundPart>) -> String {
    let v: Vec<String> = parts.into_iter().map(ToString::to_string).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What the cancels carrying one reference add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefundTally {
    /// Sum of the successful and pending parts (error parts moved nothing).
    counted: Money,
    /// The last part still pending, if any.
    pending: Option<String>,
    /// The last successful or pending part.
    last: Option<String>,
    /// The last part in error state.
    last_error: Option<String>,
}

impl RefundTally {
    pub(super) fn of(
        parts: &[RefundPart],
        currency: crate::money::Currency,
    ) -> Result<RefundTally, String> {
        let mut t = RefundTally {
            counted: Money::zero(currency),
            pending: None,
            last: None,
            last_error: None,
        };
        for p in parts {
            let add = |acc: Money| {
                acc.checked_add(p.amount)
                    .map_err(|e| format!("refund part {}: {e}", p.id))
            };
            match p.status {
                TxStatus::Error => t.last_error = Some(p.id.clone()),
                TxStatus::Pending => {
                    t.counted = add(t.counted)?;
                    t.pending = Some(p.id.clone());
                    t.last = Some(p.id.clone());
                }
                TxStatus::Success => {
                    t.counted = add(t.counted)?;
                    t.last = Some(p.id.clone());
                }
            }
        }
        Ok(t)
    }
}

/// What a refund still needs, given the parts already carrying its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RefundPlan {
    /// The parts add up to the amount and all succeeded: the last part's id.
    Complete { tx_id: String },
    /// A part is still pending: send nothing until it is final.
    Waiting { tx_id: String },
    /// Send these parts (charge id, amount), in this order.
    Send(Vec<(String, Money)>),
}

/// Plans a refund over the successful charges in charge order (php-sdk
/// CancelService::cancelPaymentCharges), each part up to the charge's refundable rest (its
/// amount less the non-failed cancels on it), for what `ours` (the parts already carrying our
/// reference) leaves of `amount`. Declines, before anything is sent, when the remainder exceeds
/// what is refundable or when our reference already carries more than the amount.
pub(super) fn plan_refund(
    view: &PaymentView,
    amount: Money,
    ours: &[RefundPart],
) -> Result<RefundPlan, PspOutcome> {
    let amounts = |e: String| declined("PAYBRIDGE.AMOUNTS", e);
    let cur = amount.currency();
    let tally = RefundTally::of(ours, cur).map_err(amounts)?;
    let order = tally
        .counted
        .cmp_to(&amount)
        .map_err(|e| amounts(e.to_string()))?;
    if order.is_gt() {
        return Err(declined(
            "PAYBRIDGE.REFUND_REFERENCE",
            format!(
                "cancels carrying this refund's reference add up to {}, more than the {amount} asked ({}); check by hand",
                tally.counted,
                list_parts(ours)
            ),
        ));
    }
    if let Some(tx_id) = tally.pending {
        return Ok(RefundPlan::Waiting { tx_id });
    }
    if order.is_eq()
        && let Some(tx_id) = tally.last
    {
        return Ok(RefundPlan::Complete { tx_id });
    }
    let left = amount
        .checked_sub(tally.counted)
        .map_err(|e| amounts(e.to_string()))?;
    let refundable = Refundable::of(view, cur).map_err(amounts)?;
    if left
        .cmp_to(&refundable.total)
        .map_err(|e| amounts(e.to_string()))?
        .is_gt()
    {
        let mut message = format!(
            "a refund of {left} exceeds what is refundable: {}",
            refundable.describe()
        );
        if tally.counted.is_positive() {
            message.push_str(&format!(
                "; already refunded under this reference: {} ({}) of {amount}",
                tally.counted,
                list_parts(ours.iter().filter(|p| p.status != TxStatus::Error))
            ));
        }
        return Err(declined("PAYBRIDGE.REFUND_EXCEEDS", message));
    }
    spread(amount, left, refundable.rests)
        .map(RefundPlan::Send)
        .map_err(amounts)
}

/// What a payment can still refund.
struct Refundable {
    /// Each successful charge's rest (its amount less the non-failed cancels on it), in charge
    /// order.
    rests: Vec<(String, Money)>,
    /// The non-failed payment-level cancels, which name no charge.
    unattributed: Money,
    /// The rests' sum less `unattributed`.
    total: Money,
}

impl Refundable {
    fn of(view: &PaymentView, cur: crate::money::Currency) -> Result<Refundable, String> {
        let not_failed = |r: &&TxRef| r.kind == TxKind::CancelCharge && r.status != TxStatus::Error;
        // A payment-level cancel (`…/charges/cancels/{id}`, e.g. made in Unzer Insights) names no
        // charge; it still lowers what the payment can refund in total.
        let unattributed = Money::sum(
            cur,
            view.txs
                .iter()
                .filter(not_failed)
                .filter(|r| r.parent_charge.is_none())
                .map(|r| &r.amount),
        )
        .map_err(|e| e.to_string())?;
        let mut rests: Vec<(String, Money)> = Vec::new();
        for c in view
            .txs
            .iter()
            .filter(|t| t.kind == TxKind::Charge && t.status == TxStatus::Success)
            .filter(|t| valid_id(&t.id))
        {
            let refunded = Money::sum(
                cur,
                view.txs
                    .iter()
                    .filter(not_failed)
                    .filter(|r| r.parent_charge.as_deref() == Some(c.id.as_str()))
                    .map(|r| &r.amount),
            );
            let rest = refunded
                .and_then(|r| c.amount.saturating_sub(r))
                .map_err(|e| format!("charge {}: {e}", c.id))?;
            rests.push((c.id.clone(), rest));
        }
        let total = Money::sum(cur, rests.iter().map(|(_, m)| m))
            .and_then(|t| t.saturating_sub(unattributed))
            .map_err(|e| e.to_string())?;
        Ok(Refundable {
            rests,
            unattributed,
            total,
        })
    }

    /// `{total} (per charge: …)` for a message, naming the payment-level cancels when there are
    /// any.
    fn describe(&self) -> String {
        let listing = self
            .rests
            .iter()
            .map(|(id, m)| format!("{id} {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "{} (per charge: {}",
            self.total,
            if listing.is_empty() {
                "nothing"
            } else {
                &listing
            }
        );
        if self.unattributed.is_positive() {
            text.push_str(&format!(
                "; less {} refunded at payment level",
                self.unattributed
            ));
        }
        text.push(')');
        text
    }
}

/// Spreads `left` (of a refund of `amount`) over the charge rests in order, each part up to its
/// rest; an error when it does not fit or no part results.
fn spread(
    amount: Money,
    mut left: Money,
    rests: Vec<(String, Money)>,
) -> Result<Vec<(String, Money)>, String> {
    let mut parts = Vec::new();
    for (charge, rest) in rests {
        if !left.is_positive() {
            break;
        }
        if !rest.is_positive() {
            continue;
        }
        let take = rest.min(left).map_err(|e| e.to_string())?;
        left = left.checked_sub(take).map_err(|e| e.to_string())?;
        parts.push((charge, take));
    }
    if left.is_positive() || parts.is_empty() {
        return Err(format!(
            "could not spread {amount} over the charges (left over: {left})"
        ));
    }
    Ok(parts)
}
