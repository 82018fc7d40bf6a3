//! Conformance: the secondary index (order, bounds, limit, updates).

use super::*;

/// The secondary index spans partitions, is ordered by its sort key, honours the inclusive upper
/// bound and the limit, and follows updates.
pub async fn check_query_index(store: &dyn Store) {
    let now = now_secs();
    let base = unique("index");
    let gsi = format!("{base}#gsi");
    let other_gsi = format!("{base}#gsi-other");
    let (p1, p2, p3) = (
        format!("{base}#p1"),
        format!("{base}#p2"),
        format!("{base}#p3"),
    );
    let a = with_index(
        item(&p1, "a", json!({"k": "a"})),
        &gsi,
        "2026-01-03T00:00:00Z#a",
    );
    let b = with_index(
        item(&p2, "b", json!({"k": "b"})),
        &gsi,
        "2026-01-01T00:00:00Z#b",
    );
    let c = with_index(
        item(&p1, "c", json!({"k": "c"})),
        &gsi,
        "2026-01-02T00:00:00Z#c",
    );
    let d = with_index(
        item(&p3, "d", json!({"k": "d"})),
        &gsi,
        "2026-01-05T00:00:00Z#d",
    );
    let elsewhere = with_index(
        item(&p1, "e", json!({})),
        &other_gsi,
        "2026-01-01T00:00:00Z",
    );
    let unindexed = item(&p1, "f", json!({}));
    let half_indexed = Item {
        gsi_pk: Some(gsi.clone()),
        ..item(&p2, "g", json!({}))
    };
    for it in [&a, &b, &c, &d, &elsewhere, &unindexed, &half_indexed] {
        must_insert(store, it, now).await;
    }

    index_bounds_and_limits(store, &base, &gsi, now, &b).await;
    index_follows_updates(store, &gsi, now, [&p1, &p2, &p3], &c, &d).await;
}

/// Order, inclusive upper bound, limit, and index keys nobody uses.
async fn index_bounds_and_limits(store: &dyn Store, base: &str, gsi: &str, now: i64, b: &Item) {
    let (p1, p2, p3) = (
        format!("{base}#p1"),
        format!("{base}#p2"),
        format!("{base}#p3"),
    );
    let all = index_eventually(
        store,
        gsi,
        None,
        10,
        now,
        &[(&p2, "b"), (&p1, "c"), (&p1, "a"), (&p3, "d")],
        "whole index, ascending; other index keys and items without index keys excluded",
    )
    .await;
    assert_eq!(all[0], stored(b, 1), "index queries return full items");

    index_eventually(
        store,
        gsi,
        Some("2026-01-03T00:00:00Z#a"),
        10,
        now,
        &[(&p2, "b"), (&p1, "c"), (&p1, "a")],
        "upper bound is inclusive",
    )
    .await;
    index_eventually(
        store,
        gsi,
        Some("2026-01-03"),
        10,
        now,
        &[(&p2, "b"), (&p1, "c")],
        "upper bound compares whole strings",
    )
    .await;
    index_eventually(
        store,
        gsi,
        None,
        2,
        now,
        &[(&p2, "b"), (&p1, "c")],
        "limit keeps the smallest",
    )
    .await;
    index_eventually(
        store,
        gsi,
        Some("2026-01-04"),
        1,
        now,
        &[(&p2, "b")],
        "bound and limit together",
    )
    .await;
    index_eventually(
        store,
        gsi,
        Some("2025"),
        10,
        now,
        &[],
        "bound below everything",
    )
    .await;
    index_eventually(
        store,
        &format!("{base}#gsi-unused"),
        None,
        10,
        now,
        &[],
        "unused index key",
    )
    .await;
}

/// Moving an item in the index and taking one out are seen by the next index read.
async fn index_follows_updates(
    store: &dyn Store,
    gsi: &str,
    now: i64,
    parts: [&str; 3],
    c: &Item,
    d: &Item,
) {
    let [p1, p2, p3] = parts;
    let d_moved = Item {
        gsi_sk: Some("2025-12-31T00:00:00Z#d".to_owned()),
        ..stored(d, 1)
    };
    assert_eq!(ok(store.update(&d_moved).await, "move d in the index"), 2);
    let c_removed = Item {
        gsi_pk: None,
        gsi_sk: None,
        ..stored(c, 1)
    };
    assert_eq!(
        ok(store.update(&c_removed).await, "take c out of the index"),
        2
    );
    index_eventually(
        store,
        gsi,
        None,
        10,
        now,
        &[(p3, "d"), (p2, "b"), (p1, "a")],
        "index follows updates",
    )
    .await;
}
