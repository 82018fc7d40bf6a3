//! Conformance: items with a TTL read as absent from `expires_at` on, and their key may be
//! taken over by an insert.

use super::*;

/// Expired items are absent for reads, and insert may take over their key.
pub async fn check_ttl(store: &dyn Store) {
    let base = now_secs();
    let later = base + 200;
    let pk = unique("ttl");
    let gsi = format!("{pk}#gsi");

    let expiring_item = expiring(
        with_index(item(&pk, "A", json!({"who": "A"})), &gsi, "t1"),
        base + 100,
    );
    let forever = with_index(item(&pk, "B", json!({"who": "B"})), &gsi, "t2");
    let already_dead = expiring(
        with_index(item(&pk, "C", json!({"who": "C"})), &gsi, "t0"),
        base - 10,
    );
    must_insert(store, &expiring_item, base).await;
    must_insert(store, &forever, base).await;
    // Written while still alive; already expired in real time when the reads below run.
    must_insert(store, &already_dead, base - 20).await;

    assert_eq!(
        must_get(store, &pk, "A", base).await,
        stored(&expiring_item, 1)
    );
    assert!(
        ok(store.get(&pk, "A", base + 99).await, "get before expiry").is_some(),
        "alive one second before expires_at"
    );
    assert_eq!(
        ok(store.get(&pk, "A", base + 100).await, "get at expiry"),
        None,
        "dead once now reaches expires_at"
    );
    assert_eq!(
        ok(store.get(&pk, "A", later).await, "get after expiry"),
        None
    );
    assert_eq!(ok(store.get(&pk, "C", base).await, "get expired"), None);
    ttl_hides_from_queries(store, &pk, &gsi, base, later).await;
    ttl_takeover(store, &pk, &gsi, base, later).await;
}

/// Queries and the index hide expired items, and the index's limit counts live ones only.
async fn ttl_hides_from_queries(store: &dyn Store, pk: &str, gsi: &str, base: i64, later: i64) {
    assert_eq!(
        sks(&ok(store.query(pk, "", base).await, "query before expiry")),
        ["A", "B"],
        "query hides expired items"
    );
    assert_eq!(
        sks(&ok(store.query(pk, "", later).await, "query after expiry")),
        ["B"],
        "query hides items expired at its now"
    );
    index_eventually(
        store,
        gsi,
        None,
        10,
        base,
        &[(pk, "A"), (pk, "B")],
        "index before expiry",
    )
    .await;
    index_eventually(
        store,
        gsi,
        None,
        10,
        later,
        &[(pk, "B")],
        "index after expiry",
    )
    .await;
    // The limit counts live items: expired ones sorting first must not use it up.
    index_eventually(
        store,
        gsi,
        None,
        1,
        later,
        &[(pk, "B")],
        "index limit skips expired items",
    )
    .await;
}

/// After expiry: insert takes over a dead key (at and after `expires_at`, never before), and
/// replacements leave the index when they have no index keys.
async fn ttl_takeover(store: &dyn Store, pk: &str, gsi: &str, base: i64, later: i64) {
    let usurper = item(pk, "A", json!({"who": "A, second life"}));
    assert!(
        !ok(
            store.insert(&usurper, base).await,
            "insert over live TTL item"
        ),
        "insert over a not yet expired item must return false"
    );
    assert!(
        ok(
            store.insert(&usurper, later).await,
            "insert over expired item"
        ),
        "insert over an expired item must succeed"
    );
    assert_eq!(
        must_get(store, pk, "A", later).await,
        stored(&usurper, 1),
        "the replacement starts at version 1 with its own body, TTL and index keys"
    );
    let boundary = expiring(item(pk, "D", json!({"who": "D"})), base + 100);
    must_insert(store, &boundary, base).await;
    let successor = item(pk, "D", json!({"who": "D, second life"}));
    assert!(
        !ok(
            store.insert(&successor, base + 99).await,
            "insert before expiry"
        ),
        "insert one second before expires_at must return false"
    );
    assert!(
        ok(
            store.insert(&successor, base + 100).await,
            "insert at expiry"
        ),
        "insert once now reaches expires_at must succeed (the item reads as absent then)"
    );
    assert_eq!(must_get(store, pk, "D", base).await, stored(&successor, 1));

    let reborn = item(pk, "C", json!({"who": "C, second life"}));
    assert!(
        ok(
            store.insert(&reborn, base).await,
            "insert over long expired item"
        ),
        "insert over an item expired in real time must succeed"
    );
    assert_eq!(must_get(store, pk, "C", base).await, stored(&reborn, 1));
    assert_eq!(
        sks(&ok(
            store.query(pk, "", later).await,
            "query after replacement"
        )),
        ["A", "B", "C", "D"]
    );
    index_eventually(
        store,
        gsi,
        None,
        10,
        later,
        &[(pk, "B")],
        "replacements without index keys left the index",
    )
    .await;
}
