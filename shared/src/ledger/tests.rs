//! Unit tests of the ledger: ids, the state machine, the money invariants.

use super::*;
use crate::money::Currency;

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::EUR)
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

fn plan() -> Plan {
    Plan {
        doc_kind: DocKind::Invoice,
        doc_id: "R1".into(),
        purpose: Purpose::CaptureInvoice,
        psp: Some(PspCall::Capture { amount: eur(1000) }),
        erp: vec![ErpWrite::Comment { text: "x".into() }],
    }
}

#[test]
fn ids_are_deterministic_and_distinct() {
    let k = OrderKey::new("t", "c", "100");
    assert_eq!(plan().op_id(&k), "t/c/100/invoice:R1/capture_invoice");
    assert_eq!(plan().op_id(&k), plan().op_id(&k));
    let mut p2 = plan();
    p2.purpose = Purpose::BookInvoice;
    assert_ne!(p2.op_id(&k), plan().op_id(&k));
    assert_eq!(psp_reference("a"), psp_reference("a"));
    assert_eq!(psp_reference("a").len(), 26);
    assert_eq!(OrderKey::from_pk(&k.pk()), Some(k));
}

#[test]
fn state_machine_happy_path_and_guards() {
    let k = OrderKey::new("t", "c", "100");
    let mut op = Operation::new(&k, plan(), t(0));
    assert!(op.begin(Step::Psp, t(0)).is_err(), "no step before claim");
    op.claim(t(0), chrono::Duration::seconds(30)).unwrap();
    let mut other = op.clone();
    assert!(matches!(
        other.claim(t(1), chrono::Duration::seconds(30)),
        Err(TransitionError::Leased(..))
    ));
    assert!(
        op.begin(Step::Erp { index: 0 }, t(1)).is_err(),
        "erp before psp"
    );
    op.begin(Step::Psp, t(1)).unwrap();
    // lease expired: takeover keeps the in-flight mark (unknown outcome)
    other = op.clone();
    other.claim(t(60), chrono::Duration::seconds(30)).unwrap();
    assert_eq!(other.inflight, Some(Step::Psp));
    op.psp_succeeded("s-chg-1".into(), t(2)).unwrap();
    assert!(op.finish(t(2)).is_err(), "erp step remains");
    op.begin(Step::Erp { index: 0 }, t(2)).unwrap();
    op.erp_succeeded(t(3)).unwrap();
    op.finish(t(3)).unwrap();
    assert_eq!(op.status, OpStatus::Done);
    assert!(matches!(
        op.claim(t(4), chrono::Duration::seconds(30)),
        Err(TransitionError::Finished(_))
    ));
}

#[test]
fn attempts_count_per_step_and_a_finished_op_awaits_its_follow_up() {
    let k = OrderKey::new("t", "c", "100");
    let mut op = Operation::new(&k, plan(), t(0));
    for i in 0..5 {
        op.claim(t(i * 100), chrono::Duration::seconds(30)).unwrap();
        op.retry_at(t(i * 100 + 50), "timeout".into(), t(i * 100 + 1));
    }
    op.claim(t(500), chrono::Duration::seconds(30)).unwrap();
    assert_eq!(op.attempts, 6);
    op.begin(Step::Psp, t(500)).unwrap();
    op.psp_succeeded("tx".into(), t(501)).unwrap();
    assert_eq!(op.attempts, 1, "the ERP write starts afresh");
    op.begin(Step::Erp { index: 0 }, t(502)).unwrap();
    op.erp_succeeded(t(503)).unwrap();
    assert!(!op.follow_up);
    op.finish(t(503)).unwrap();
    assert!(op.follow_up, "finished, not followed up yet");
}

#[test]
fn retry_waits_until_due() {
    let k = OrderKey::new("t", "c", "100");
    let mut op = Operation::new(&k, plan(), t(0));
    op.claim(t(0), chrono::Duration::seconds(30)).unwrap();
    op.retry_at(t(100), "timeout".into(), t(1));
    assert!(matches!(
        op.claim(t(50), chrono::Duration::seconds(30)),
        Err(TransitionError::NotDue(..))
    ));
    op.claim(t(100), chrono::Duration::seconds(30)).unwrap();
    assert_eq!(op.attempts, 2);
}

#[test]
fn invariants() {
    let pos = Position {
        authorized: eur(10000),
        charged: eur(6000),
        reversed: eur(1000),
        refunded: eur(500),
    };
    assert!(check_call(&PspCall::Capture { amount: eur(3000) }, &pos, 0).is_ok());
    assert!(check_call(&PspCall::Capture { amount: eur(3002) }, &pos, 2).is_ok());
    assert!(check_call(&PspCall::Capture { amount: eur(3003) }, &pos, 2).is_err());
    assert!(check_call(&PspCall::Reverse { amount: eur(3001) }, &pos, 0).is_err());
    assert!(
        check_call(
            &PspCall::Refund {
                amount: eur(5500),
                reason: RefundReason::Return
            },
            &pos,
            0
        )
        .is_ok()
    );
    assert!(
        check_call(
            &PspCall::Refund {
                amount: eur(5501),
                reason: RefundReason::Return
            },
            &pos,
            0
        )
        .is_err()
    );
    assert!(check_call(&PspCall::Capture { amount: eur(0) }, &pos, 0).is_err());
    assert!(
        check_call(
            &PspCall::Capture {
                amount: Money::from_minor(1, Currency::JPY)
            },
            &pos,
            0
        )
        .is_err()
    );
    assert!(check_position(&pos, 0).is_ok());
    let bad = Position {
        refunded: eur(7000),
        ..pos
    };
    assert!(check_position(&bad, 0).is_err());
}
