//! Conformance: one key hammered from several tasks at once.

use super::*;

const WRITERS: usize = 8;

/// Several tasks update the same item from the same version at once: exactly one wins.
pub async fn check_concurrent_updates(store: Arc<dyn Store>) {
    let now = now_secs();
    let pk = unique("concurrent-update");
    must_insert(
        store.as_ref(),
        &item(&pk, "CAS", json!({"writer": null})),
        now,
    )
    .await;

    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        let candidate = Item {
            version: 1,
            body: json!({ "writer": writer }),
            ..item(&pk, "CAS", json!(null))
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (writer, store.update(&candidate).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (writer, result) = ok(task.await, "join update task");
        match result {
            Ok(version) => {
                assert_eq!(version, 2, "the winning update returns version 2");
                winners.push(writer);
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("concurrent update: unexpected error {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent update wins, got {winners:?}"
    );
    let got = must_get(store.as_ref(), &pk, "CAS", now).await;
    assert_eq!(got.version, 2);
    assert_eq!(
        got.body,
        json!({ "writer": winners[0] }),
        "the winner's body is stored"
    );
}

/// Several tasks insert the same key at once: exactly one gets `true`.
pub async fn check_concurrent_inserts(store: Arc<dyn Store>) {
    let now = now_secs();
    let pk = unique("concurrent-insert");
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        let candidate = item(&pk, "ONCE", json!({ "writer": writer }));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (writer, store.insert(&candidate, now).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (writer, result) = ok(task.await, "join insert task");
        if ok(result, "concurrent insert") {
            winners.push(writer);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent insert wins, got {winners:?}"
    );
    let got = must_get(store.as_ref(), &pk, "ONCE", now).await;
    assert_eq!(got.version, 1);
    assert_eq!(
        got.body,
        json!({ "writer": winners[0] }),
        "the winner's body is stored"
    );
}

/// Read-modify-write loops from several tasks lose no increment.
pub async fn check_concurrent_counter(store: Arc<dyn Store>) {
    const TASKS: u64 = 4;
    const INCREMENTS: u64 = 10;
    let now = now_secs();
    let pk = unique("concurrent-counter");
    must_insert(
        store.as_ref(),
        &item(&pk, "COUNTER", json!({"count": 0})),
        now,
    )
    .await;

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        let pk = pk.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                let mut tries = 0;
                loop {
                    tries += 1;
                    assert!(tries < 1_000, "counter: no progress after {tries} tries");
                    let mut current = must_get(store.as_ref(), &pk, "COUNTER", now).await;
                    let count = current.body["count"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("counter body lost its count: {}", current.body));
                    current.body = json!({ "count": count + 1 });
                    match store.update(&current).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => tokio::task::yield_now().await,
                        Err(e) => panic!("counter update: unexpected error {e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        ok(task.await, "join counter task");
    }
    let got = must_get(store.as_ref(), &pk, "COUNTER", now).await;
    assert_eq!(
        got.body,
        json!({ "count": TASKS * INCREMENTS }),
        "no increment may be lost"
    );
    assert_eq!(
        got.version,
        1 + TASKS * INCREMENTS,
        "one version per successful update"
    );
}
