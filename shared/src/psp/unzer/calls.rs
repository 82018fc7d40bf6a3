//! The [`Psp`] contract at Unzer: `fetch` (the payment and its transactions), `execute` (one
//! money call, routed by the payment's initial transaction) and `find_transaction`
//! (reconciliation by our reference after an unknown outcome).

use super::*;

#[async_trait]
impl Psp for UnzerPsp {
    async fn fetch(
        &self,
        account: &MethodConfig,
        payment_id: &str,
    ) -> Result<PspPayment, PspError> {
        let t = self.target(account).map_err(PspError::Auth)?;
        let mut view = self.view(&t, payment_id).await?;
        if transformers::pending_initial_charge(view.payment.method)
            && let Some(initial) = view.txs.iter().find(|x| x.kind == TxKind::Charge)
        {
            // Transfer details are on the initial charge's `processing` (docs "Accept Unzer Prepayment"; java-sdk JsonProcessing).
            let path = self.local_path(&t, payment_id, &initial.url)?;
            let charge: WireReply = self.get_json(&t, &path, payment_id).await?;
            view.payment.bank_details = charge.bank_details();
        }
        Ok(view.payment)
    }

    async fn execute(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> PspOutcome {
        let t = match self.target(account) {
            Ok(t) => t,
            Err(m) => return declined("PAYBRIDGE.CONFIG", m),
        };
        if !valid_id(&payment.payment_id) {
            return declined(
                "PAYBRIDGE.REQUEST",
                format!("{:?} is not an Unzer payment id", payment.payment_id),
            );
        }
        if let Some(a) = call.amount() {
            if a.currency() != payment.currency {
                return declined(
                    "PAYBRIDGE.CURRENCY",
                    format!(
                        "call in {} on a payment in {}",
                        a.currency(),
                        payment.currency
                    ),
                );
            }
            if !a.is_positive() {
                return declined("PAYBRIDGE.AMOUNT", format!("amount {a} is not positive"));
            }
        }
        if let PspCall::Refund { amount, reason } = call
            && !transformers::is_paylater(payment.method)
        {
            return self
                .refund_spread(&t, payment, *amount, *reason, reference)
                .await;
        }
        let planned = match self.plan(payment, call, reference) {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let outcome = self.post(&t, &planned).await;
        match (&outcome, call) {
            // A repeated shipment answers "insurance already activated" (php-sdk ApiResponseCodes COR.700.400.800): the earlier shipment stands.
            (PspOutcome::Declined { code, .. }, PspCall::Shipment { .. })
                if code == "COR.700.400.800" =>
            {
                match self.view(&t, &payment.payment_id).await {
                    Ok(v) => match v
                        .txs
                        .iter()
                        .rev()
                        .find(|x| x.kind == TxKind::Shipment && x.status == TxStatus::Success)
                    {
                        Some(s) => PspOutcome::Done {
                            tx_id: s.id.clone(),
                        },
                        None => outcome,
                    },
                    Err(_) => outcome,
                }
            }
            _ => outcome,
        }
    }

    /// Reconciliation: the transaction `call` made under `reference`, read from Unzer (the
    /// payment's list has no references, so each candidate transaction of the call's kind is
    /// fetched and its `paymentReference` / `invoiceId` / `orderId` compared).
    ///
    /// A refund on a non-Paylater payment may consist of several charge cancels (one per charge,
    /// see the module doc); they are summed — every `cancel-charge` carrying `reference`, failed
    /// ones left out:
    ///
    /// - they add up to the refund's amount and all succeeded: `Some` with the last part's id,
    ///   kind `CancelCharge`, status `Success` and the refund's amount — the refund is done;
    /// - some part is still pending: `Some` with that part's id and status `Pending` — look again
    ///   later; nothing may be sent meanwhile;
    /// - they add up to less and none is pending (including none at all): `None`. Calling
    ///   [`Psp::execute`] again with the same call and reference is then safe: it reads the
    ///   parts again and sends only the remainder, so the total never exceeds the amount (it
    ///   answers `Done` without sending anything if the parts are complete by then). Note that
    ///   the parts already refunded show in the payment's refunded position, so a caller that
    ///   checks the whole amount against the refundable rest must add them back;
    /// - nothing succeeded or is pending but a part failed: `Some` with status `Error`, as for
    ///   a single call Unzer refused;
    /// - they add up to more than the amount (only if something else used our reference):
    ///   `Err(PspError::BadReply)` naming the parts — a human must look.
    ///
    /// Other calls (and Paylater refunds, one payment-level cancel) return the single
    /// transaction carrying `reference`; one carrying it with another amount is an error.
    async fn find_transaction(
        &self,
        account: &MethodConfig,
        payment: &PspPayment,
        call: &PspCall,
        reference: &str,
    ) -> Result<Option<PspTransaction>, PspError> {
        let t = self.target(account).map_err(PspError::Auth)?;
        let pid = payment.payment_id.as_str();
        let view = self.view(&t, pid).await?;
        if let PspCall::Refund { amount, .. } = call
            && !transformers::is_paylater(payment.method)
        {
            return self.find_refund(&t, &view, *amount, reference).await;
        }
        let kind = call_kind(call);
        let expected = call.amount();
        let (same, other): (Vec<&TxRef>, Vec<&TxRef>) = view
            .txs
            .iter()
            .filter(|x| x.kind == kind)
            .partition(|x| expected.is_none_or(|e| x.amount == e));
        // Newest first; candidates with another amount last, only to tell a mismatch from absence.
        for tx in same.iter().rev().chain(other.iter().rev()) {
            let path = self.local_path(&t, pid, &tx.url)?;
            let reply: WireReply = self.get_json(&t, &path, pid).await?;
            let ours = match call {
                PspCall::Shipment { invoice_id } => {
                    reply.invoice_id.as_deref() == Some(invoice_id.as_str())
                        || reply.carries(reference)
                }
                _ => reply.carries(reference),
            };
            if !ours {
                continue;
            }
            if let Some(e) = expected
                && tx.amount != e
            {
                return Err(PspError::BadReply(format!(
                    "transaction {} carries our reference {reference} but is for {}, not {e}",
                    tx.id, tx.amount
                )));
            }
            return Ok(Some(PspTransaction {
                at: None,
                id: tx.id.clone(),
                kind,
                status: tx_status_of(&reply, tx),
                amount: tx.amount,
                reference: Some(reference.to_string()),
            }));
        }
        Ok(None)
    }
}
