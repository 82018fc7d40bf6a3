//! Backend-independent conformance suite for [`Store`]: every backend (SQLite here, DynamoDB in
//! the AWS build) must pass it, which is what makes them interchangeable.
//!
//! The checks use nothing but the trait. Each one works under its own freshly generated key
//! prefix, so the suite can run against a shared, non-empty table (and twice in a row). `now` is
//! taken from the real clock and TTLs are placed relative to it, so a backend whose storage
//! deletes expired items on its own (DynamoDB TTL) sees nothing surprising. Index reads are
//! retried for a short while before asserting, because secondary indexes of some backends are
//! only eventually consistent. A failed check panics with a message naming what went wrong.
//!
//! Entry points: [`run_all`] for the sequential checks, [`run_concurrency`] for the ones that
//! need the store shared between tasks.

use super::{Item, Store, StoreError};
use serde_json::json;
use std::fmt::{Debug, Display};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs every sequential check.
pub async fn run_all(store: &dyn Store) {
    check_get_missing(store).await;
    check_insert_and_duplicate(store).await;
    check_update_cas(store).await;
    check_query_prefix(store).await;
    check_query_prefix_wildcards(store).await;
    check_ttl(store).await;
    check_query_index(store).await;
    check_delete(store).await;
    check_body_round_trip(store).await;
    check_commit(store).await;
}

/// Runs the checks that hammer one key from several tasks at once.
pub async fn run_concurrency(store: Arc<dyn Store>) {
    check_concurrent_updates(Arc::clone(&store)).await;
    check_concurrent_inserts(Arc::clone(&store)).await;
    check_concurrent_counter(store).await;
}

// ---------------------------------------------------------------------------------------------
// helpers

/// A key prefix no other check (of this or any other run) uses.
fn unique(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conformance#{check}#{nanos:x}-{:x}-{n}", std::process::id())
}

/// Unix seconds from the real clock.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn ok<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

fn assert_conflict<T: Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(e) if e.is_conflict() => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn item(pk: &str, sk: &str, body: serde_json::Value) -> Item {
    Item::new(pk, sk, body)
}

fn with_index(mut item: Item, gsi_pk: &str, gsi_sk: &str) -> Item {
    item.gsi_pk = Some(gsi_pk.to_owned());
    item.gsi_sk = Some(gsi_sk.to_owned());
    item
}

fn expiring(mut item: Item, expires_at: i64) -> Item {
    item.expires_at = Some(expires_at);
    item
}

/// `item` as the store should hand it back at `version`.
fn stored(item: &Item, version: u64) -> Item {
    Item {
        version,
        ..item.clone()
    }
}

async fn must_insert(store: &dyn Store, item: &Item, now: i64) {
    let inserted = ok(
        store.insert(item, now).await,
        &format!("insert {}/{}", item.pk, item.sk),
    );
    assert!(
        inserted,
        "insert {}/{}: key unexpectedly taken",
        item.pk, item.sk
    );
}

async fn must_get(store: &dyn Store, pk: &str, sk: &str, now: i64) -> Item {
    ok(store.get(pk, sk, now).await, &format!("get {pk}/{sk}"))
        .unwrap_or_else(|| panic!("get {pk}/{sk}: expected an item, found none"))
}

fn keys(items: &[Item]) -> Vec<(String, String)> {
    items.iter().map(|i| (i.pk.clone(), i.sk.clone())).collect()
}

fn sks(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.sk.as_str()).collect()
}

/// Queries the index until it returns exactly `expected` (pk, sk) keys, for backends whose
/// indexes lag behind writes; panics with the last answer after about three seconds.
async fn index_eventually(
    store: &dyn Store,
    gsi_pk: &str,
    gsi_sk_max: Option<&str>,
    limit: usize,
    now: i64,
    expected: &[(&str, &str)],
    what: &str,
) -> Vec<Item> {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(pk, sk)| ((*pk).to_owned(), (*sk).to_owned()))
        .collect();
    let mut attempts = 0;
    loop {
        let items = ok(
            store.query_index(gsi_pk, gsi_sk_max, limit, now).await,
            what,
        );
        assert!(
            items.len() <= limit,
            "{what}: {} items exceed limit {limit}",
            items.len()
        );
        if keys(&items) == expected {
            return items;
        }
        attempts += 1;
        if attempts >= 30 {
            panic!(
                "{what}: query_index({gsi_pk:?}, {gsi_sk_max:?}, {limit}) returned {:?}, \
                 expected {expected:?}",
                keys(&items)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// sequential checks

/// `get` of keys that were never written is `None`, also next to existing keys (no prefix match).
pub async fn check_get_missing(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("get-missing");
    assert_eq!(
        ok(
            store.get(&pk, "NOPE", now).await,
            "get in an empty partition"
        ),
        None,
        "get of a missing key"
    );
    must_insert(store, &item(&pk, "ORDER#10", json!({"n": 10})), now).await;
    for sk in ["ORDER#1", "ORDER#100", "ORDER#", "order#10", ""] {
        assert_eq!(
            ok(store.get(&pk, sk, now).await, "get near an existing key"),
            None,
            "get {pk}/{sk:?} must not match ORDER#10"
        );
    }
    let other_pk = format!("{pk}-other");
    assert_eq!(
        ok(
            store.get(&other_pk, "ORDER#10", now).await,
            "get in another partition"
        ),
        None,
        "get must not cross partitions"
    );
}

/// Insert stores version 1 whatever the given version; a second insert of the same key returns
/// false and changes nothing, also after the item has been updated.
pub async fn check_insert_and_duplicate(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("insert");
    let mut first = with_index(
        item(&pk, "ORDER#1", json!({"status": "new", "amount": "10.00"})),
        &format!("{pk}#gsi"),
        "2026-01-01T00:00:00Z",
    );
    first.version = 42; // ignored by insert
    first.expires_at = Some(now + 86_400);
    assert!(
        ok(store.insert(&first, now).await, "first insert"),
        "first insert of a fresh key must succeed"
    );
    assert_eq!(
        must_get(store, &pk, "ORDER#1", now).await,
        stored(&first, 1),
        "inserted item reads back with version 1 and every field intact"
    );

    let second = item(&pk, "ORDER#1", json!({"status": "impostor"}));
    assert!(
        !ok(store.insert(&second, now).await, "duplicate insert"),
        "insert over a live item must return false"
    );
    assert_eq!(
        must_get(store, &pk, "ORDER#1", now).await,
        stored(&first, 1),
        "a refused insert changes nothing"
    );

    let updated = Item {
        body: json!({"status": "paid"}),
        ..stored(&first, 1)
    };
    assert_eq!(ok(store.update(&updated).await, "update after insert"), 2);
    assert!(
        !ok(
            store.insert(&second, now).await,
            "insert over an updated item"
        ),
        "insert over an updated live item must return false"
    );
    assert_eq!(
        must_get(store, &pk, "ORDER#1", now).await,
        stored(&updated, 2),
        "a refused insert leaves the updated item alone"
    );

    must_insert(store, &item(&pk, "ORDER#2", json!({"n": 2})), now).await;
    assert_eq!(
        must_get(store, &pk, "ORDER#2", now).await.version,
        1,
        "a neighbouring key is independent"
    );
}

/// Update is a compare-and-swap on the version.
pub async fn check_update_cas(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("update");
    let gsi = format!("{pk}#gsi");
    let original = item(&pk, "OP#1", json!({"state": "planned"}));
    must_insert(store, &original, now).await;

    let v1 = stored(&original, 1);
    let changed = expiring(
        with_index(
            Item {
                body: json!({"state": "running", "attempt": 1}),
                ..v1.clone()
            },
            &gsi,
            "2026-02-01",
        ),
        now + 3_600,
    );
    assert_eq!(
        ok(
            store.update(&changed).await,
            "update at the current version"
        ),
        2,
        "update returns the new version"
    );
    assert_eq!(
        must_get(store, &pk, "OP#1", now).await,
        stored(&changed, 2),
        "update replaces body, TTL and index keys and bumps the version"
    );

    let stale = Item {
        body: json!({"state": "stale writer"}),
        ..v1.clone()
    };
    assert_conflict(store.update(&stale).await, "update with a stale version");
    let ahead = Item {
        version: 3,
        ..stale.clone()
    };
    assert_conflict(store.update(&ahead).await, "update with a future version");
    assert_eq!(
        must_get(store, &pk, "OP#1", now).await,
        stored(&changed, 2),
        "a lost update changes nothing"
    );
    update_clears_and_never_creates(store, &pk, &changed, now).await;
}

/// An update can clear the TTL and index keys; an update of an absent item creates nothing.
async fn update_clears_and_never_creates(store: &dyn Store, pk: &str, changed: &Item, now: i64) {
    let cleared = Item {
        version: 2,
        body: json!({"state": "done"}),
        expires_at: None,
        gsi_pk: None,
        gsi_sk: None,
        ..changed.clone()
    };
    assert_eq!(ok(store.update(&cleared).await, "second update"), 3);
    assert_eq!(
        must_get(store, pk, "OP#1", now).await,
        stored(&cleared, 3),
        "update can clear TTL and index keys"
    );

    let absent = Item {
        version: 1,
        ..item(pk, "OP#missing", json!({}))
    };
    assert_conflict(store.update(&absent).await, "update of an absent item");
    let absent0 = Item {
        version: 0,
        ..absent.clone()
    };
    assert_conflict(
        store.update(&absent0).await,
        "update of an absent item at version 0",
    );
    assert_eq!(
        ok(
            store.get(pk, "OP#missing", now).await,
            "get after failed update"
        ),
        None,
        "update must not create items"
    );
}

/// Query returns one partition's keys with the given prefix, ascending (bytewise), nothing else.
pub async fn check_query_prefix(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("query");
    let other_pk = format!("{pk}-other");
    let in_partition = [
        "ORDER#b",
        "ORDER$",
        "ORDER#a#1",
        "OP#1",
        "ORDER",
        "ORDER#é",
        "ORDERX#1",
        "ORDER#a",
        "order#a",
        "ORDER#c",
        "ORDER#B",
    ];
    for (n, sk) in in_partition.iter().enumerate() {
        must_insert(store, &item(&pk, sk, json!({ "n": n, "sk": sk })), now).await;
    }
    must_insert(store, &item(&other_pk, "ORDER#a", json!({})), now).await;
    must_insert(store, &item(&other_pk, "ORDER#0", json!({})), now).await;

    let got = ok(store.query(&pk, "ORDER#", now).await, "query ORDER#");
    assert_eq!(
        sks(&got),
        [
            "ORDER#B",
            "ORDER#a",
            "ORDER#a#1",
            "ORDER#b",
            "ORDER#c",
            "ORDER#é"
        ],
        "query by prefix: ascending by bytes, only keys with the prefix, only this partition"
    );
    assert!(
        got.iter().all(|i| i.pk == pk),
        "query stays in its partition"
    );
    let a = got
        .iter()
        .find(|i| i.sk == "ORDER#a")
        .unwrap_or_else(|| panic!("ORDER#a missing from query"));
    assert_eq!(
        a.body,
        json!({"n": 7, "sk": "ORDER#a"}),
        "query returns full items"
    );
    assert_eq!(a.version, 1);
    query_prefix_edges(store, &pk, &in_partition, now).await;
}

/// A prefix equal to a whole key, another prefix, no match, the empty prefix, an empty
/// partition.
async fn query_prefix_edges(store: &dyn Store, pk: &str, in_partition: &[&str], now: i64) {
    assert_eq!(
        sks(&ok(store.query(pk, "ORDER#a", now).await, "query ORDER#a")),
        ["ORDER#a", "ORDER#a#1"],
        "a prefix equal to a whole key includes that key"
    );
    assert_eq!(
        sks(&ok(store.query(pk, "OP#", now).await, "query OP#")),
        ["OP#1"]
    );
    assert!(
        ok(store.query(pk, "ORDER#z", now).await, "query ORDER#z").is_empty(),
        "no match is an empty list"
    );

    let mut all: Vec<&str> = in_partition.to_vec();
    all.sort_unstable();
    assert_eq!(
        sks(&ok(
            store.query(pk, "", now).await,
            "query with empty prefix"
        )),
        all,
        "an empty prefix lists the whole partition, ascending"
    );
    assert!(
        ok(
            store.query(&format!("{pk}-empty"), "", now).await,
            "query empty partition"
        )
        .is_empty()
    );
}

/// Prefixes are literal: `%`, `_`, `*`, `?`, `[`, `\` are no wildcards.
pub async fn check_query_prefix_wildcards(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("query-wild");
    let keys = [
        "w%x#1", "w_x#1", "wAx#1", "wABx#1", "w%%x#1", "wx#1", "g[ab]#1", "ga#1", "g*#1", "gz#1",
        "g?#1", "q\\#1", "q\\\\#1", "q#1",
    ];
    for sk in keys {
        must_insert(store, &item(&pk, sk, json!({ "sk": sk })), now).await;
    }
    let cases: [(&str, &[&str]); 8] = [
        ("w%x#", &["w%x#1"]),
        ("w_x#", &["w_x#1"]),
        ("w%", &["w%%x#1", "w%x#1"]),
        ("w_", &["w_x#1"]),
        ("g[ab]", &["g[ab]#1"]),
        ("g*", &["g*#1"]),
        ("g?", &["g?#1"]),
        ("q\\#", &["q\\#1"]),
    ];
    for (prefix, expected) in cases {
        let got = ok(
            store.query(&pk, prefix, now).await,
            &format!("query {prefix:?}"),
        );
        assert_eq!(
            sks(&got),
            expected,
            "prefix {prefix:?} must match literally"
        );
    }
}

/// Delete is conditional on the version and leaves neighbours alone.
pub async fn check_delete(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("delete");
    let gsi = format!("{pk}#gsi");
    must_insert(
        store,
        &with_index(item(&pk, "X", json!({"x": 1})), &gsi, "1"),
        now,
    )
    .await;
    must_insert(store, &item(&pk, "Y", json!({"y": 1})), now).await;

    assert_conflict(
        store.delete(&pk, "X", 2).await,
        "delete with a wrong version",
    );
    assert_conflict(store.delete(&pk, "X", 0).await, "delete with version 0");
    assert_eq!(
        must_get(store, &pk, "X", now).await.version,
        1,
        "failed delete keeps the item"
    );

    ok(
        store.delete(&pk, "X", 1).await,
        "delete with the right version",
    );
    assert_eq!(ok(store.get(&pk, "X", now).await, "get after delete"), None);
    assert_eq!(
        sks(&ok(store.query(&pk, "", now).await, "query after delete")),
        ["Y"]
    );
    index_eventually(
        store,
        &gsi,
        None,
        10,
        now,
        &[],
        "deleted item left the index",
    )
    .await;

    assert_conflict(store.delete(&pk, "X", 1).await, "delete of a deleted item");
    assert_conflict(
        store.delete(&pk, "never", 1).await,
        "delete of an absent item",
    );

    let again = item(&pk, "X", json!({"x": 2}));
    must_insert(store, &again, now).await;
    assert_eq!(
        must_get(store, &pk, "X", now).await,
        stored(&again, 1),
        "a deleted key can be inserted again, from version 1"
    );

    let updated = Item {
        body: json!({"y": 2}),
        ..stored(&item(&pk, "Y", json!({"y": 1})), 1)
    };
    assert_eq!(ok(store.update(&updated).await, "update Y"), 2);
    assert_conflict(
        store.delete(&pk, "Y", 1).await,
        "delete with the pre-update version",
    );
    ok(
        store.delete(&pk, "Y", 2).await,
        "delete at the updated version",
    );
    assert_eq!(
        ok(store.get(&pk, "Y", now).await, "get Y after delete"),
        None
    );
}

/// Bodies and keys come back exactly: big decimal strings, unicode, escapes, big integers.
pub async fn check_body_round_trip(store: &dyn Store) {
    let now = now_secs();
    let pk = format!("{}#Ünïcødé-€", unique("body"));
    let sk = "ORDER#東京#🚀#a_b%c";
    let body = json!({
        "amount": "123456789012345678901234567890.123456789012345678",
        "tiny": "-0.000000000000000000000000001",
        "trailing_zeros": "10.500",
        "currency": "EUR",
        "unicode": "Zürich – 東京 – Ελλάδα – 🚀🇩🇪 – \u{202E}rtl\u{202C} – e\u{301}",
        "escapes": "quote\" backslash\\ slash/ newline\n tab\t cr\r nul\u{0} bell\u{7}",
        "max_u64": u64::MAX,
        "min_i64": i64::MIN,
        "zero": 0,
        "float": 0.1,
        "one_and_half": 1.5,
        "flags": [true, false, null],
        "nested": {"list": [1, "two", null, {"deep": [[], {}]}], "empty_string": ""},
        "key with #%_ and ünïcode": "value",
    });
    let it = with_index(
        item(&pk, sk, body.clone()),
        &format!("{pk}#gsi-東京"),
        "2026#🚀",
    );
    must_insert(store, &it, now).await;

    let got = must_get(store, &pk, sk, now).await;
    assert_eq!(got.body, body, "body round-trips exactly through get");
    assert_eq!(got, stored(&it, 1), "keys round-trip exactly");
    assert_eq!(
        got.body["amount"].as_str(),
        Some("123456789012345678901234567890.123456789012345678"),
        "decimal strings are not turned into numbers"
    );

    let queried = ok(
        store.query(&pk, "ORDER#東京#", now).await,
        "query unicode prefix",
    );
    assert_eq!(
        queried,
        vec![stored(&it, 1)],
        "body round-trips exactly through query"
    );
    index_eventually(
        store,
        &format!("{pk}#gsi-東京"),
        Some("2026#🚀"),
        10,
        now,
        &[(&pk, sk)],
        "unicode index keys",
    )
    .await;

    let mut body2 = body.clone();
    body2["amount"] = json!("-98765432109876543210.98765432109876543210");
    body2["unicode"] = json!("日本語のテキスト 🧾");
    let updated = Item {
        body: body2.clone(),
        ..stored(&it, 1)
    };
    assert_eq!(ok(store.update(&updated).await, "update unicode item"), 2);
    assert_eq!(
        must_get(store, &pk, sk, now).await.body,
        body2,
        "body round-trips exactly through update"
    );
}

mod commit;
mod concurrency;
mod index;
mod ttl;

pub use commit::*;
pub use concurrency::*;
pub use index::*;
pub use ttl::*;
