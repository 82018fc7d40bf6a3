//! The simulator's payments: an ordered list of steps (authorization, capture, credit,
//! reversal), the amounts `inquire.aspx` reports, and Paygate's money rules.
//!
//! Facts followed (reference paygate.md §3.2–§3.5, developer.computop.com "Capture / Credit /
//! Reversal" page 26975539 and "Status inquiries" page 26247867):
//! - `AmountAuth`, `AmountCap`, `AmountCred` are the authoritative money state; `LastStatus` is
//!   the status of the last step only (it reads `FAILED` after a failed credit although the
//!   authorization and capture succeeded). [D]
//! - Partial captures sum up in `AmountCap`. [D/C]
//! - A credit with reference cannot exceed what was captured. [D]
//! - `reverse.aspx` undoes the **last** transaction step: the authorization before any capture,
//!   else the capture; cancelling a capture is possible on the same day only (Computop
//!   Analytics actions page). [D]
//!
//! The simulator's own choices, all `[INF]`:
//! - Every action that reaches a payment becomes a step with its own XID, also a refused one
//!   (status `FAILED`, nothing moved): that is how `LastStatus` can read `FAILED`.
//! - Amounts count succeeded steps only; a `PENDING` step counts against the open
//!   authorization (or the captured amount, for a credit) but is not shown until settled.
//! - "The last step" for a reversal is the last succeeded step that is not a reversal and not
//!   already undone; failed and pending steps are skipped. So auth, capture, reverse, reverse
//!   cancels the capture and then the authorization. A credit as the last step is refused
//!   (undo a credit by hand). Every day is "the same day": a capture can always be cancelled.
//! - A reversal must name the undone step's full amount and the payment's currency.
//! - After an authorization reversal `inquire` keeps `AmountAuth` unchanged (the docs do not say
//!   it drops) with `LastStatus` the reversal's `OK`; the snapshot's `reversed` flag tells it.
//!   A cancelled capture no longer counts in `AmountCap`.
//! - A booked payment (sale: PayPal, Sofort, or `Capture=AUTO`) is an authorization and a
//!   capture of the full amount, both `OK`.

use super::codes::{self, param};

/// How the payment started (what the customer did on the hosted page or the shop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    /// Authorization only (card, Klarna, BillSAFE with `Capture=MANUAL`): `AUTHORIZED`.
    Reserved,
    /// A sale captured at once (PayPal, Sofort, or `Capture=AUTO`): `OK`.
    Booked,
    /// Authorization still open (code `6…`, `PENDING`): nothing authorized until
    /// [`super::PaygateSim::settle`].
    Pending,
    /// The authorization failed or the customer cancelled: nothing to capture.
    Failed,
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Auth,
    Capture,
    Credit,
    Reversal,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Auth => "auth",
            StepKind::Capture => "capture",
            StepKind::Credit => "credit",
            StepKind::Reversal => "reversal",
        }
    }
}

/// One transaction step of a payment, as tests inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStep {
    pub kind: StepKind,
    /// Paygate's id of this single transaction (an32).
    pub xid: String,
    /// The amount this step asked for, minor units; money moved only if [`SimStep::succeeded`].
    pub amount: i64,
    pub currency: String,
    pub req_id: Option<String>,
    /// `AUTHORIZED`, `OK`, `FAILED` or `PENDING`.
    pub status: String,
    pub code: String,
    pub description: String,
    pub trans_id: String,
    pub ref_nr: Option<String>,
    /// For a reversal: the XID of the step it undid.
    pub undoes: Option<String>,
}

impl SimStep {
    pub fn succeeded(&self) -> bool {
        self.status == "OK" || self.status == "AUTHORIZED"
    }

    pub fn pending(&self) -> bool {
        self.status == "PENDING"
    }
}

/// A payment as tests inspect it ([`super::PaygateSim::payment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPaymentView {
    pub pay_id: String,
    pub merchant_id: String,
    pub trans_id: String,
    pub ref_nr: Option<String>,
    pub currency: String,
    pub kind: PaymentKind,
    pub amount_auth: i64,
    pub amount_cap: i64,
    pub amount_cred: i64,
    /// The authorization was reversed.
    pub reversed: bool,
    /// What `inquire` shows as `LastStatus` (empty before any step).
    pub last_status: String,
    pub steps: Vec<SimStep>,
}

/// The money state over a prefix of the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    pub auth: i64,
    pub cap: i64,
    pub cred: i64,
    pub pending_cap: i64,
    pub pending_cred: i64,
    pub reversed: bool,
}

pub fn amounts(steps: &[SimStep]) -> Amounts {
    let mut a = Amounts::default();
    for (i, s) in steps.iter().enumerate() {
        if s.pending() {
            match s.kind {
                StepKind::Capture => a.pending_cap += s.amount,
                StepKind::Credit => a.pending_cred += s.amount,
                _ => {}
            }
            continue;
        }
        if !s.succeeded() {
            continue;
        }
        match s.kind {
            StepKind::Auth => a.auth += s.amount,
            StepKind::Capture => a.cap += s.amount,
            StepKind::Credit => a.cred += s.amount,
            StepKind::Reversal => {
                let target = steps[..i]
                    .iter()
                    .find(|t| Some(&t.xid) == s.undoes.as_ref());
                match target.map(|t| (t.kind, t.amount)) {
                    Some((StepKind::Auth, _)) => a.reversed = true,
                    Some((StepKind::Capture, amount)) => a.cap -= amount,
                    _ => {}
                }
            }
        }
    }
    a
}

/// A refusal of an action: the code and its description (the step is recorded `FAILED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub description: String,
}

fn refuse(code: String, description: impl Into<String>) -> Refusal {
    Refusal {
        code,
        description: description.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub pay_id: String,
    pub mid: String,
    pub trans_id: String,
    pub ref_nr: Option<String>,
    pub currency: String,
    pub kind: PaymentKind,
    pub user_data: Option<String>,
    pub steps: Vec<SimStep>,
}

impl Payment {
    pub fn amounts(&self) -> Amounts {
        amounts(&self.steps)
    }

    /// `LastStatus` over a prefix of the steps.
    pub fn last_status_of(steps: &[SimStep]) -> String {
        steps.last().map(|s| s.status.clone()).unwrap_or_default()
    }

    pub fn view(&self) -> SimPaymentView {
        let a = self.amounts();
        SimPaymentView {
            pay_id: self.pay_id.clone(),
            merchant_id: self.mid.clone(),
            trans_id: self.trans_id.clone(),
            ref_nr: self.ref_nr.clone(),
            currency: self.currency.clone(),
            kind: self.kind,
            amount_auth: a.auth,
            amount_cap: a.cap,
            amount_cred: a.cred,
            reversed: a.reversed,
            last_status: Payment::last_status_of(&self.steps),
            steps: self.steps.clone(),
        }
    }

    /// The step a reversal would undo now (see the module notes).
    pub fn reversible(&self) -> Option<&SimStep> {
        let undone: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::Reversal && s.succeeded())
            .filter_map(|s| s.undoes.as_deref())
            .collect();
        self.steps.iter().rev().find(|s| {
            s.succeeded() && s.kind != StepKind::Reversal && !undone.contains(&s.xid.as_str())
        })
    }

    /// Checks an action against the money rules; `Ok(undoes)` (the undone XID for a reversal).
    pub fn check(
        &self,
        kind: StepKind,
        amount: i64,
        currency: &str,
    ) -> Result<Option<String>, Refusal> {
        if currency != self.currency {
            return Err(refuse(
                codes::unknown(param::CURRENCY),
                format!("currency {currency} is not the payment's {}", self.currency),
            ));
        }
        let a = self.amounts();
        match kind {
            StepKind::Capture => {
                if a.reversed {
                    return Err(refuse(
                        codes::no_longer_valid(param::PAY_ID),
                        "authorization reversed",
                    ));
                }
                let open = a.auth - a.cap - a.pending_cap;
                if amount > open {
                    return Err(refuse(
                        codes::invalid(param::AMOUNT),
                        format!("amount {amount} exceeds the open authorization {open}"),
                    ));
                }
                Ok(None)
            }
            StepKind::Credit => {
                let open = a.cap - a.cred - a.pending_cred;
                if amount > open {
                    return Err(refuse(
                        codes::invalid(param::AMOUNT),
                        format!("amount {amount} exceeds the creditable amount {open}"),
                    ));
                }
                Ok(None)
            }
            StepKind::Reversal => {
                let Some(target) = self.reversible() else {
                    return Err(refuse(
                        codes::no_longer_valid(param::PAY_ID),
                        "nothing left to reverse",
                    ));
                };
                if target.kind == StepKind::Credit {
                    return Err(refuse(
                        codes::invalid(param::PAY_ID),
                        "the last step is a credit and cannot be reversed",
                    ));
                }
                if amount != target.amount {
                    return Err(refuse(
                        codes::invalid(param::AMOUNT),
                        format!(
                            "amount {amount} is not the last step's amount {}",
                            target.amount
                        ),
                    ));
                }
                Ok(Some(target.xid.clone()))
            }
            StepKind::Auth => Err(refuse(
                codes::invalid(param::NONE),
                "an authorization is not an action",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: StepKind, xid: &str, amount: i64, status: &str) -> SimStep {
        SimStep {
            kind,
            xid: xid.into(),
            amount,
            currency: "EUR".into(),
            req_id: None,
            status: status.into(),
            code: codes::OK.into(),
            description: String::new(),
            trans_id: "T".into(),
            ref_nr: None,
            undoes: None,
        }
    }

    fn payment(steps: Vec<SimStep>) -> Payment {
        Payment {
            pay_id: "p".into(),
            mid: "m".into(),
            trans_id: "T".into(),
            ref_nr: None,
            currency: "EUR".into(),
            kind: PaymentKind::Reserved,
            user_data: None,
            steps,
        }
    }

    #[test]
    fn paygate_sim_model_reversal_undoes_the_last_step_then_the_one_before() {
        let mut p = payment(vec![
            step(StepKind::Auth, "a", 1000, "AUTHORIZED"),
            step(StepKind::Capture, "c1", 400, "OK"),
            step(StepKind::Capture, "cf", 900, "FAILED"),
        ]);
        assert_eq!(p.reversible().map(|s| s.xid.as_str()), Some("c1"));
        assert_eq!(
            p.check(StepKind::Reversal, 1000, "EUR").unwrap_err().code,
            "20120006"
        );
        assert_eq!(
            p.check(StepKind::Reversal, 400, "EUR").unwrap(),
            Some("c1".into())
        );
        let mut r = step(StepKind::Reversal, "r1", 400, "OK");
        r.undoes = Some("c1".into());
        p.steps.push(r);
        let a = p.amounts();
        assert_eq!((a.auth, a.cap, a.reversed), (1000, 0, false));
        assert_eq!(p.reversible().map(|s| s.xid.as_str()), Some("a"));
        let mut r2 = step(StepKind::Reversal, "r2", 1000, "OK");
        r2.undoes = Some("a".into());
        p.steps.push(r2);
        let a = p.amounts();
        assert_eq!((a.auth, a.cap, a.reversed), (1000, 0, true));
        assert!(p.reversible().is_none());
        assert_eq!(
            p.check(StepKind::Capture, 1, "EUR").unwrap_err().code,
            "20180004"
        );
        // the prefix before the last step: what a lagging inquire shows
        let lag = amounts(&p.steps[..p.steps.len() - 1]);
        assert!(!lag.reversed);
    }

    #[test]
    fn paygate_sim_model_pending_steps_hold_but_do_not_show() {
        let p = payment(vec![
            step(StepKind::Auth, "a", 1000, "AUTHORIZED"),
            step(StepKind::Capture, "c1", 600, "PENDING"),
        ]);
        let a = p.amounts();
        assert_eq!((a.cap, a.pending_cap), (0, 600));
        assert_eq!(
            p.check(StepKind::Capture, 401, "EUR").unwrap_err().code,
            "20120006"
        );
        assert!(p.check(StepKind::Capture, 400, "EUR").is_ok());
        assert_eq!(
            p.check(StepKind::Capture, 1, "USD").unwrap_err().code,
            "20160007"
        );
        assert_eq!(
            p.check(StepKind::Credit, 1, "EUR").unwrap_err().code,
            "20120006"
        );
    }
}
