//! Conformance: a commit of several writes applies all of them or none, with the conditions of
//! the single-item writes, and refuses what no backend can do in one transaction.

use super::*;
use crate::store::{MAX_COMMIT_WRITES, Write};

/// The items the commit checks write: `KEPT` and `GONE` stored at version 1, `DEAD` expired.
struct Fixture {
    pk: String,
    kept: Item,
    gone: Item,
    /// Not stored yet, with an index entry.
    new: Item,
    /// `KEPT` changed, at its stored version.
    bumped: Item,
    now: i64,
}

/// All or nothing: a commit whose every condition holds writes everything and returns the new
/// versions; one failing condition (anywhere in the list) writes nothing and names the item.
pub async fn check_commit(store: &dyn Store) {
    let now = now_secs();
    let pk = unique("commit");
    let kept = item(&pk, "KEPT", json!({"n": 1}));
    let gone = item(&pk, "GONE", json!({"n": 1}));
    let dead = expiring(item(&pk, "DEAD", json!({"n": 0})), now - 5);
    must_insert(store, &kept, now).await;
    must_insert(store, &gone, now).await;
    must_insert(store, &dead, now - 10).await;
    assert_eq!(
        ok(store.commit(&[], now).await, "empty commit"),
        Vec::<u64>::new()
    );
    let new = with_index(
        item(&pk, "NEW", json!({"n": 2})),
        &format!("{pk}#gsi"),
        "t1",
    );
    let bumped = Item {
        body: json!({"n": 3}),
        ..stored(&kept, 1)
    };
    let f = Fixture {
        pk,
        kept,
        gone,
        new,
        bumped,
        now,
    };
    commit_rolls_back(store, &f).await;
    commit_writes_all(store, &f).await;
    commit_refuses_what_no_transaction_holds(store, &f).await;
}

/// A condition failing in the middle: nothing is written, the conflict names that item.
async fn commit_rolls_back(store: &dyn Store, f: &Fixture) {
    let Fixture {
        pk,
        kept,
        gone,
        new,
        bumped,
        now,
    } = f;
    let now = *now;
    let stale = Item {
        body: json!({"n": 9}),
        ..stored(gone, 7)
    };
    let failing = [
        Write::Insert(new.clone()),
        Write::Update(stale),
        Write::Update(bumped.clone()),
    ];
    match store.commit(&failing, now).await {
        Err(StoreError::Conflict { pk: p, sk }) => {
            assert_eq!(
                (p.as_str(), sk.as_str()),
                (pk.as_str(), "GONE"),
                "conflict names the stale write"
            );
        }
        other => panic!("commit with a stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        ok(store.get(pk, "NEW", now).await, "get NEW"),
        None,
        "insert rolled back"
    );
    assert_eq!(
        must_get(store, pk, "KEPT", now).await,
        stored(kept, 1),
        "update rolled back"
    );
    // An insert of a live key fails the commit too (the single insert would return false).
    let taken = [Write::Update(bumped.clone()), Write::Insert(gone.clone())];
    assert_conflict(
        store.commit(&taken, now).await,
        "commit inserting a live key",
    );
    assert_eq!(
        must_get(store, pk, "KEPT", now).await.version,
        1,
        "nothing written"
    );
}

/// Every condition holds: insert (also over an expired item), update and delete together.
async fn commit_writes_all(store: &dyn Store, f: &Fixture) {
    let Fixture {
        pk, new, bumped, ..
    } = f;
    let now = f.now;
    let over_dead = item(pk, "DEAD", json!({"n": 5}));
    let writes = [
        Write::Insert(new.clone()),
        Write::Update(bumped.clone()),
        Write::Delete {
            pk: pk.clone(),
            sk: "GONE".into(),
            version: 1,
        },
        Write::Insert(over_dead.clone()),
    ];
    assert_eq!(
        ok(store.commit(&writes, now).await, "commit"),
        vec![1, 2, 0, 1]
    );
    assert_eq!(must_get(store, pk, "NEW", now).await, stored(new, 1));
    assert_eq!(must_get(store, pk, "KEPT", now).await, stored(bumped, 2));
    assert_eq!(
        ok(store.get(pk, "GONE", now).await, "get GONE"),
        None,
        "deleted"
    );
    assert_eq!(
        must_get(store, pk, "DEAD", now).await,
        stored(&over_dead, 1)
    );
    let gsi = format!("{pk}#gsi");
    index_eventually(
        store,
        &gsi,
        None,
        10,
        now,
        &[(pk, "NEW")],
        "index entry of a committed insert",
    )
    .await;
}

/// Refused before writing: two writes of one item, more writes than a transaction holds; the
/// largest commit a backend must take is taken.
async fn commit_refuses_what_no_transaction_holds(store: &dyn Store, f: &Fixture) {
    let Fixture { pk, new, .. } = f;
    let now = f.now;
    let twice = [
        Write::Insert(item(pk, "TWICE", json!({}))),
        Write::Update(stored(new, 1)),
        Write::Delete {
            pk: pk.clone(),
            sk: "TWICE".into(),
            version: 1,
        },
    ];
    match store.commit(&twice, now).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("twice"), "says why: {m}"),
        other => panic!("commit writing one item twice: expected Backend, got {other:?}"),
    }
    let many: Vec<Write> = (0..=MAX_COMMIT_WRITES)
        .map(|i| Write::Insert(item(pk, &format!("MANY{i:03}"), json!({}))))
        .collect();
    match store.commit(&many, now).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("at most"), "says why: {m}"),
        other => panic!(
            "commit of {} writes: expected Backend, got {other:?}",
            many.len()
        ),
    }
    assert_eq!(ok(store.get(pk, "TWICE", now).await, "get TWICE"), None);
    assert_eq!(
        ok(store.query(pk, "MANY", now).await, "query MANY"),
        Vec::<Item>::new()
    );
    // The largest commit a backend must take.
    let most = &many[..MAX_COMMIT_WRITES];
    assert_eq!(
        ok(store.commit(most, now).await, "commit of the most writes").len(),
        MAX_COMMIT_WRITES
    );
    assert_eq!(
        ok(store.query(pk, "MANY", now).await, "query MANY").len(),
        MAX_COMMIT_WRITES
    );
}
