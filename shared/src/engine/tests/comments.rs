//! Engine tests of behaviour.md §4: comments and flags.

use super::*;

/// Every decision of a handful of complete order lives, with their errors.
fn all_decisions() -> Vec<Decision> {
    let mut out = vec![];
    for m in ALL_METHODS {
        for mode in [Standard, Expert] {
            let mut s = S::new(m, mode, LINES);
            let mut round = |s: &mut S| {
                let d = s.decide();
                s.insert(&d);
                s.complete_all();
                out.push(d);
            };
            round(&mut s);
            round(&mut s);
            s.receive("100.00");
            round(&mut s);
            s.invoice("R1", "60.00", &["L1"]);
            round(&mut s);
            s.cancel(&["L2"], STO);
            s.order.status = OrderStatus::Closed;
            round(&mut s);
            round(&mut s);
            s.credit("C1", Some("R1"), "10.00");
            s.credit("C2", Some("R1"), "500.00");
            round(&mut s);
            let mut bad = S::new(m, mode, LINES);
            bad.pay().transactions[0].amount = eur("1.00");
            round(&mut bad);
        }
    }
    out
}

#[test]
fn spec_4_every_action_leaves_one_erp_comment() {
    let decisions = all_decisions();
    let plans: Vec<&Plan> = decisions.iter().flat_map(|d| &d.plans).collect();
    assert!(plans.len() > 100, "the scenarios exercise the engine");
    for p in plans {
        let comments: Vec<&str> = p
            .erp
            .iter()
            .filter_map(|w| match w {
                ErpWrite::Comment { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(comments.len(), 1, "{p:#?}");
        assert!(
            matches!(p.erp.last(), Some(ErpWrite::Comment { .. })),
            "comment after the action: {p:#?}"
        );
        assert!(
            comments[0].starts_with("paybridge 2023-11-14 22:13 UTC: "),
            "what and when: {}",
            comments[0]
        );
    }
}

#[test]
fn spec_4_errors_get_a_flag_and_exactly_one_comment() {
    for d in all_decisions() {
        let problems: Vec<&Plan> = d.plans.iter().filter(|p| p.purpose == P::Problem).collect();
        // Problem plans are only emitted the first time; never more than the errors
        assert!(problems.len() <= d.errors().count(), "{d:#?}");
        for p in problems {
            let code = p
                .doc_id
                .strip_prefix("1001:")
                .expect("order-scoped problem id");
            assert!(d.errors().any(|f| f.code == code), "{code}");
            assert_eq!(p.psp, None);
            assert!(
                matches!(&p.erp[..], [ErpWrite::Comment { text }] if text.contains("ERROR")),
                "{p:#?}"
            );
        }
        let mut codes: Vec<&str> = d.flags.iter().map(|f| f.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), d.flags.len(), "one flag per code");
    }
    // once written, the comment is not repeated while the error stays
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].amount = eur("1.00");
    let d = s.step();
    assert_eq!(
        d.plans.iter().filter(|p| p.purpose == P::Problem).count(),
        1
    );
    assert_eq!(s.order.status, OrderStatus::Open);
    let again = s.decide();
    assert_eq!(again.plans, [], "no second comment");
    assert_eq!(
        flags(&again),
        [(Severity::Error, "authorization_check")],
        "stays an error until solved"
    );
}

#[test]
fn spec_4_hints_write_no_comment() {
    let mut s = S::new(PM::Card, Expert, LINES);
    s.pay().transactions[0].status = TxStatus::Pending;
    let d = s.decide();
    assert_eq!(flags(&d), [(Severity::Hint, "pending")]);
    assert!(d.plans.is_empty());
}
