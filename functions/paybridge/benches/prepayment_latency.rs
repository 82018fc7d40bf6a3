//! Prepayment latency bench (not a test): how long from Unzer's "payment completed" webhook to
//! the shipping lock cleared in pixi, the one path of the lifecycle where a customer and a
//! warehouse wait for paybridge (seed 000's app takes 5–10 minutes).
//!
//! ```text
//! cargo bench -p paybridge --bench prepayment_latency            # 200 orders
//! cargo bench -p paybridge --bench prepayment_latency -- 500
//! ```
//!
//! N prepayment orders are imported and released with their lock (pixi and Unzer simulators
//! on loopback, zero latency, SQLite on disk in a temporary directory, wired like `paybridge
//! serve`). Then `serve`'s own worker loop runs in the background ([`serve::spawn_worker`]),
//! and for one order after the other the transfer arrives at Unzer, Unzer's webhook is POSTed
//! to paybridge's listener, and the clock runs until the simulator shows the order's lock
//! cleared. No poll runs meanwhile: the worker is woken by the webhook's enqueue. Prints
//! p50 / p90 / p99 / max over the orders; every order's end state is checked.

use anyhow::{Context, bail};
use paybridge::demo::{Harness, Method, Scenario, Step};
use paybridge::serve;
use std::time::{Duration, Instant};

const DEFAULT_ORDERS: usize = 200;
const FIRST_ORDER: i64 = 70_001;
/// Per order; far above anything expected, so a stuck order fails the bench instead of hanging.
const GIVE_UP: Duration = Duration::from_secs(30);

fn orders_wanted() -> anyhow::Result<usize> {
    match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(n) => n
            .parse()
            .with_context(|| format!("{n:?} is not a number of orders")),
        None => Ok(DEFAULT_ORDERS),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(n: usize) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    h.unzer.set_latency(Duration::ZERO);
    let scenarios: Vec<Scenario> = (0..n)
        .map(|i| {
            Scenario::new(
                FIRST_ORDER + i as i64,
                "bench",
                "latency",
                Method::Prepayment,
            )
            .then(vec![Step::TransferReceived])
        })
        .collect();
    let mut runs: Vec<_> = scenarios.iter().map(|s| h.prepare(s)).collect();
    for r in runs.iter_mut() {
        for s in r.scenario.phases[0].clone() {
            h.apply(r, &s).await?;
        }
    }
    h.settle().await?;
    for r in &runs {
        let o = h.pixi.order(r.scenario.order).context("order imported")?;
        if !o.shipping_lock {
            bail!("order {} released without its lock", r.scenario.order);
        }
    }
    println!(
        "prepayment latency bench: {n} orders released with their lock; SQLite in {}",
        h.dir().display()
    );

    let worker = serve::spawn_worker(std::sync::Arc::clone(&h.app));
    let mut latencies = Vec::with_capacity(n);
    for r in runs.iter_mut() {
        let nr = r.scenario.order;
        let started = Instant::now();
        h.apply(r, &Step::TransferReceived).await?; // transfer + webhook (answered 200)
        loop {
            if !h.pixi.order(nr).context("order")?.shipping_lock {
                break;
            }
            if started.elapsed() > GIVE_UP {
                bail!("order {nr}: lock not cleared within {GIVE_UP:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed());
    }
    worker.shutdown().await;

    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "  webhook → lock cleared   p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   ({n} orders, one after the other)",
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.90)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted[n - 1]),
    );
    // What the orders end as once the rest has settled (the receipt booked on close is a
    // later phase; here: open, unlocked, charged in full).
    h.settle().await?;
    let mut wrong = 0;
    for r in &runs {
        let s = h.observe_run(r).await?;
        if s.erp.locked || s.erp.status != "OPEN" || !s.problems.is_empty() {
            wrong += 1;
            eprintln!("order {}: {s}", r.scenario.order);
        }
    }
    h.shutdown().await?;
    if wrong > 0 {
        bail!("{wrong} orders did not end open and unlocked");
    }
    println!("all {n} orders open, unlocked, without problems");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let n = orders_wanted()?;
    if n == 0 {
        bail!("at least one order");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(n))
}
