//! behaviour.md §3.6, the IO around a payment link: the link operation's step (the link from
//! the PSP's connector, the customer's e-mail address from the ERP, the e-mail through the
//! tenant's SMTP), the operator's "e-mail it again", and how a payment made on the link finds
//! its order.
//!
//! One link per order: its reference ([`link_reference`], derived from the order) is the PSP's
//! merchant transaction id *and* idempotency key of the requested payment, so however often the
//! link is e-mailed or opened, a paid link is one payment. Before the e-mail leaves, the
//! reference is indexed to the order (`T#{tenant}#PAY#{reference}`), so the PSP's webhook that
//! names it finds the order; the payment id it reports is then indexed as well and kept on the
//! order record (`link_payment_id`), and the order runs the usual flows on it.
//!
//! A crash after the e-mail left and before the step was saved sends the same e-mail again on
//! the next attempt: the same link, so never a second payment.

use super::operation::Next;
use super::{App, AppError, StepResult};
use crate::config::MethodConfig;
use crate::ledger::{DocKind, OpStatus, Operation, OrderKey, Plan, PspCall, Purpose, Step};
use crate::model::TxStatus;
use crate::money::Money;
use crate::notify::PaymentLinkMail;
use crate::psp::LinkRequest;
use crate::queue::Job;
use crate::store::StoreError;
use crate::store::repo::OrderRecord;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The reference of an order's payment link: `pl` + 24 hex digits of SHA-256 of the order's
/// key (26 characters: within every PSP's merchant-reference limits, an idempotency key of 32).
pub fn link_reference(key: &OrderKey) -> String {
    let digest = Sha256::digest(format!("{}#payment-link", key.pk()).as_bytes());
    format!("pl{}", &hex::encode(digest)[..24])
}

/// What an operator's "e-mail the link again" did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// Planned and queued (the operation's id).
    Queued(String),
    /// Nothing to re-send, with the reason.
    Refused(String),
}

impl App {
    /// The order a webhook's payment belongs to: by the payment id, else (a payment made on a
    /// link) by the merchant reference the webhook named.
    pub(super) async fn order_of_event(
        &self,
        payment_id: &str,
        reference: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<OrderKey>, StoreError> {
        let repo = self.repo();
        if let Some(key) = repo
            .order_for_payment(self.tenant(), payment_id, now)
            .await?
        {
            return Ok(Some(key));
        }
        match reference {
            Some(r) if r.starts_with("pl") => repo.order_for_payment(self.tenant(), r, now).await,
            _ => Ok(None),
        }
    }

    /// The order of a link reference, if it is one.
    pub(super) async fn link_order(
        &self,
        reference: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<OrderKey>, StoreError> {
        match reference {
            Some(r) if r.starts_with("pl") => {
                self.repo().order_for_payment(self.tenant(), r, now).await
            }
            _ => Ok(None),
        }
    }

    /// A payment reported for the order's link becomes the order's payment: indexed to the
    /// order and kept on its record, unless the record already holds one that did not fail
    /// (a replayed report of an earlier, failed attempt never replaces a good payment).
    pub(super) async fn adopt_link_payment(
        &self,
        key: &OrderKey,
        payment_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let repo = self.repo();
        repo.link_payment(&key.tenant, payment_id, key, now).await?;
        for _ in 0..3 {
            let Some(mut rec) = repo.order(key, now).await? else {
                return Ok(());
            };
            let keep = match rec.link_payment_id.as_deref() {
                None => false,
                Some(p) if p == payment_id => true,
                Some(_) => !rec
                    .psp
                    .as_ref()
                    .and_then(|v| v.initial())
                    .is_some_and(|t| t.status == TxStatus::Error),
            };
            if keep {
                return Ok(());
            }
            rec.link_payment_id = Some(payment_id.to_string());
            rec.psp = None; // the view was of the other payment
            rec.updated_at = now;
            match repo.save_order(&rec, now).await {
                Ok(_) => {
                    let what = format!("payment {payment_id} made on the payment link");
                    return self.history(key, now, None, what, None).await;
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::from(StoreError::Backend(
            "the order record kept changing while a link payment was recorded".into(),
        )))
    }

    /// The link operation's step: the link, the customer's address, the e-mail.
    pub(super) async fn link_step(
        &self,
        key: &OrderKey,
        op: &mut Operation,
        rec: &OrderRecord,
        cfg: &MethodConfig,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Result<Next, AppError> {
        let failed = |why: String| Ok(Some(StepResult::Failed(why)));
        let Some(facts) = rec.facts.as_ref() else {
            return failed("the order's facts are gone".into());
        };
        let Some(public) = self.config.server.public_url.as_deref() else {
            return failed("no [server] public_url: the PSP could not reach paybridge".into());
        };
        let reference = link_reference(key);
        let request = LinkRequest {
            reference: reference.clone(),
            amount,
            order_id: facts.order_id.clone(),
            description: format!("{} order {}", self.config.tenant.shop_name, facts.order_id),
            notify_url: format!("{public}/webhooks/{}", cfg.psp.name()),
            success_url: format!("{public}/paylink/done"),
            failure_url: format!("{public}/paylink/failed"),
        };
        let url = match self.psp.payment_link(cfg, &request) {
            Ok(u) => u,
            Err(e) => return failed(format!("no payment link: {e}")),
        };
        let Some(erp) = self.erps.get(&key.conn) else {
            return failed(format!("no ERP connection {}", key.conn));
        };
        let to = match erp.customer_email(facts).await {
            Ok(Some(to)) => to,
            Ok(None) => return failed("the ERP has no e-mail address for the customer".into()),
            Err(e) => return Ok(Some(StepResult::Retry(format!("customer e-mail: {e}")))),
        };
        // The PSP's webhook names the reference: it must find the order before anyone can pay.
        self.repo()
            .link_payment(&key.tenant, &reference, key, now)
            .await?;
        op.begin(Step::Psp, now)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        if !self.save(op, now).await? {
            return Ok(Some(StepResult::Lost));
        }
        let mail = PaymentLinkMail {
            to,
            shop: self.config.tenant.shop_name.clone(),
            order_id: facts.order_id.clone(),
            shop_order_no: facts.shop_order_no.clone(),
            amount,
            url,
            resent: op.plan.purpose == Purpose::PaymentLinkResend,
        };
        if let Err(e) = self.notifier.payment_link(&mail).await {
            return Ok(Some(StepResult::Retry(format!("payment link e-mail: {e}"))));
        }
        op.psp_succeeded(reference.clone(), now)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        // Saved with the next mark or the end.
        op.record(
            now,
            "payment link e-mailed to the customer".into(),
            Some(reference),
        );
        Ok(None)
    }

    /// An operator's "e-mail the payment link again": the same link (never a second payment),
    /// when the order has one that is not paid.
    pub async fn resend_payment_link(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<Resend, AppError> {
        let repo = self.repo();
        let refused = |why: &str| Ok(Resend::Refused(why.to_string()));
        let Some(rec) = repo.order(key, now).await? else {
            return refused("paybridge does not know the order");
        };
        let paid = rec
            .psp
            .as_ref()
            .and_then(|v| v.initial())
            .is_some_and(|t| matches!(t.status, TxStatus::Success | TxStatus::Pending));
        if rec.payment_id().is_some() && paid {
            return refused("the order is paid (or its payment is under way): nothing to re-send");
        }
        let ops = repo.ops(key, now).await?;
        let Some(first) = ops
            .iter()
            .find(|o| o.plan.purpose == Purpose::PaymentLink && o.status == OpStatus::Done)
        else {
            return refused("no payment link was e-mailed for the order yet");
        };
        let Some(PspCall::RequestPayment { amount }) = first.plan.psp.clone() else {
            return refused("the order's link operation has no amount");
        };
        let n = ops
            .iter()
            .filter(|o| o.plan.purpose == Purpose::PaymentLinkResend)
            .count()
            + 1;
        let text = format!(
            "paybridge {}: payment link for {amount} e-mailed to the customer again (operator)",
            now.format("%Y-%m-%d %H:%M UTC")
        );
        let plan = Plan {
            doc_kind: DocKind::Order,
            doc_id: format!("{}#{n}", key.order_id),
            purpose: Purpose::PaymentLinkResend,
            psp: Some(PspCall::RequestPayment { amount }),
            erp: vec![crate::ledger::ErpWrite::Comment { text }],
        };
        let op = Operation::new(key, plan, now);
        if !repo.insert_op(&op, now).await? {
            return refused("a re-send is being planned already");
        }
        self.history(
            key,
            now,
            Some(&op.id),
            "planned PaymentLinkResend (operator)".into(),
            None,
        )
        .await?;
        let job = Job::RunOp {
            order_pk: key.pk(),
            op_id: op.id.clone(),
        };
        self.enqueue(job, now).await?;
        Ok(Resend::Queued(op.id))
    }
}
