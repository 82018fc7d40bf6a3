//! `faults`: the deterministic fault-injection simulation of paybridge's runtime.
//!
//! Each lifecycle builds a fresh `App` (SQLite store and queue in memory, the memory ERP and PSP
//! wrapped in fault-injecting decorators, a simulated clock), draws one order and its document
//! history from `(seed, index)`, plays it out while processes crash at adapter calls, messages
//! are duplicated and reordered, webhooks come early, twice and out of order, PSP and ERP calls
//! time out (applied or not), fail with 5xx or are slow, and quiet hours hold the ERP back; then
//! it runs the system without faults until it is quiescent and checks the doubles' records:
//! no money moved or booked twice (`double`), no work silently dropped (`lost`), bookings equal
//! movements to the cent (`unreconciled`). See `docs/reliability.md`.
//!
//! ```text
//! cargo run --release -p paybridge-testkit --bin faults -- --lifecycles N --seed S [--threads T]
//! cargo run --release -p paybridge-testkit --bin faults -- --seed S --only INDEX   # replay one
//! ```
//!
//! With `--store dynamodb` (and `--aws-endpoint URL`, default `$PAYBRIDGE_TEST_AWS_ENDPOINT`,
//! e.g. moto server), each lifecycle keeps its store in `DynamoStore` on a fresh table (created
//! with `DynamoStore::create_table`, deleted after the lifecycle) instead of SQLite in memory;
//! everything else is the same, and a `DynamoStore` with SQLite's semantics gives exactly the
//! same output. The queue stays the SQLite queue in memory: SQS cannot follow the simulated
//! clock (its delays and visibility timeouts run on the wall clock), so `SqsQueue` is tested on
//! moto by `shared/tests/aws_moto.rs`, not here.
//!
//! ```text
//! moto_server -p 5055 &
//! cargo run --release -p paybridge-testkit --bin faults -- --store dynamodb \
//!     --aws-endpoint http://127.0.0.1:5055 --lifecycles N --seed S [--threads T]
//! ```
//!
//! Each lifecycle also draws (own stream) the age of the PSP's authorization (fresh, in the
//! warning quarter, expired, expiring while the history plays out, no time given) and hands-off
//! switches: an operator takes the order out of automation at a random point, under the same
//! faults, and usually puts it back later. The line before the last counts these draws.
//!
//! The last line of stdout is `lifecycles=N double=D lost=L unreconciled=U expiry=E
//! hands_off=H` (counts of lifecycles with at least one violation of that kind; `expiry`: a
//! capture sent after the authorization expired, or an expired authorization with money left
//! and no `authorization_expired` error; `hands_off`: a PSP or ERP call started while the order
//! was out of automation); the exit code is 1 unless all are 0.
//! A failing lifecycle prints its seed, index, replay command and trace. Results do not depend
//! on `--threads`: lifecycles are independent and reported in index order.
//!
//! | module | what it is for |
//! |---|---|
//! | [`rng`] | SplitMix64, one stream per lifecycle and purpose |
//! | [`scenario`] | the drawn order, tenant set-up, document history and fault profile |
//! | [`sim`] | clock, simulated processes, fault decisions, the adapter decorators |
//! | [`world`] | one lifecycle: history, pollers, workers, webhooks, quiescence |
//! | [`check`] | the double / lost / unreconciled definitions |

mod check;
mod rng;
mod scenario;
mod sim;
mod world;

use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "faults",
    about = "Deterministic fault-injection simulation of paybridge lifecycles"
)]
struct Cli {
    /// Number of lifecycles (indices 0..N).
    #[arg(long, default_value_t = 1000)]
    lifecycles: u64,
    /// Run seed; lifecycle i is drawn from (seed, i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (lifecycles run in parallel, each on one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// First lifecycle index (runs FIRST..FIRST+N).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Replay only this lifecycle, printing its whole trace.
    #[arg(long)]
    only: Option<u64>,
    /// Print the trace of every lifecycle, failing or not.
    #[arg(long)]
    verbose: bool,
    /// Also inject faults outside the product's stated assumptions: jobs paused past their
    /// operation lease, and PSP calls that time out and are applied by the PSP later.
    #[arg(long)]
    hazards: bool,
    /// Failing lifecycles printed with their full trace (the rest get one line each).
    #[arg(long, default_value_t = 10)]
    max_report: usize,
    /// Stop starting lifecycles after this many seconds (the report covers those completed).
    #[arg(long)]
    time_limit: Option<u64>,
    /// Lifecycles in flight per thread. Each lifecycle is one sequential future; running a few
    /// side by side fills the time their SQLite calls spend in hand-offs to tokio's blocking
    /// pool (helps on an idle machine, costs CPU on a busy one). Never changes a result.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Where each lifecycle keeps its store: SQLite in memory, or DynamoDB (a fresh table per
    /// lifecycle on --aws-endpoint, e.g. moto; deleted afterwards). The queue is the SQLite
    /// queue either way: SQS cannot follow the simulated clock (its delays and visibility
    /// timeouts run on the wall clock).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// DynamoDB endpoint for --store dynamodb (moto server, DynamoDB Local); region
    /// eu-central-1, dummy credentials. Default: $PAYBRIDGE_TEST_AWS_ENDPOINT.
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Dynamodb,
}

/// The variable `--aws-endpoint` defaults to (the one the moto tests read).
const ENDPOINT_VAR: &str = "PAYBRIDGE_TEST_AWS_ENDPOINT";

tokio::task_local! {
    /// The lifecycle a task runs, for the panic hook.
    static CURRENT: (u64, u64);
}

/// The command that replays one lifecycle; `extra` are the options that change what it does
/// (`--hazards`, `--store dynamodb …`), each with a leading space.
fn replay(seed: u64, index: u64, extra: &str) -> String {
    format!(
        "cargo run --release -p paybridge-testkit --bin faults -- --seed {seed} --only {index}{extra}"
    )
}

/// The endpoint for `--store dynamodb`, checked by listing tables on it; `Err`: what to tell.
fn dynamo_endpoint(cli: &Cli) -> Result<String, String> {
    let endpoint = cli
        .aws_endpoint
        .clone()
        .or_else(|| std::env::var(ENDPOINT_VAR).ok())
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            format!(
                "--store dynamodb needs --aws-endpoint URL or {ENDPOINT_VAR} (e.g. moto: \
                 `moto_server -p 5055 &`, then --aws-endpoint http://127.0.0.1:5055)"
            )
        })?;
    runtime(true).block_on(async {
        world::dynamo_client(&endpoint)
            .await
            .list_tables()
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "DynamoDB at {endpoint} does not answer: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            })
    })?;
    Ok(endpoint)
}

/// What the runner keeps of a lifecycle (full outcomes only for failures and `--verbose`).
struct Kept {
    failures: Vec<world::Outcome>,
    shown: Vec<world::Outcome>,
    digests: Vec<(u64, u64)>,
    info: std::collections::BTreeMap<String, u64>,
    /// Lifecycles per draw (`auth-age fresh`, `hands-off drawn`, …).
    draws: std::collections::BTreeMap<String, u64>,
    faults_fired: u64,
    calls: u64,
}

fn panic_outcome(index: u64, msg: String) -> world::Outcome {
    world::Outcome {
        index,
        findings: check::Findings {
            lost: vec![format!("PANIC: {msg}")],
            ..check::Findings::default()
        },
        trace: vec![],
        digest: 0,
        calls: 0,
        draws: vec![],
    }
}

/// A thread's runtime. The SQLite backends need neither sockets nor timers; the AWS SDK
/// (`aws_io`) needs both.
fn runtime(aws_io: bool) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_current_thread();
    if aws_io {
        b.enable_all();
    }
    b.build().expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = world::Opts {
        hazards: cli.hazards,
        detail: cli.verbose || cli.only.is_some(),
    };
    let endpoint = match cli.store {
        StoreKind::Sqlite => None,
        StoreKind::Dynamodb => match dynamo_endpoint(&cli) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut extra = String::new();
    if cli.hazards {
        extra.push_str(" --hazards");
    }
    if let Some(e) = &endpoint {
        extra.push_str(&format!(" --store dynamodb --aws-endpoint {e}"));
        eprintln!(
            "store: DynamoDB at {e}, one table per lifecycle (faults-SEED-INDEX-pPID, deleted \
             after it); queue: SQLite in memory"
        );
    }
    let replay_extra = extra.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        if let Ok((seed, index)) = CURRENT.try_with(|c| *c) {
            eprintln!(
                "PANIC in lifecycle seed={seed} index={index}; replay: {}",
                replay(seed, index, &replay_extra)
            );
        }
    }));

    let (first, count) = match cli.only {
        Some(i) => (i, 1),
        None => (cli.first, cli.lifecycles),
    };
    let verbose = cli.verbose || cli.only.is_some();
    let started = Instant::now();
    let deadline = cli
        .time_limit
        .map(|s| started + std::time::Duration::from_secs(s));
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let kept = Mutex::new(Kept {
        failures: Vec::new(),
        shown: Vec::new(),
        digests: Vec::new(),
        info: std::collections::BTreeMap::new(),
        draws: std::collections::BTreeMap::new(),
        faults_fired: 0,
        calls: 0,
    });
    let threads = cli.threads.max(1);
    let record = |o: world::Outcome| {
        let fired = o.trace.iter().filter(|l| l.starts_with("fault #")).count() as u64;
        {
            let mut kp = kept.lock().unwrap_or_else(|p| p.into_inner());
            kp.digests.push((o.index, o.digest));
            kp.faults_fired += fired;
            kp.calls += o.calls;
            for d in &o.draws {
                *kp.draws.entry(d.clone()).or_default() += 1;
            }
            for i in &o.findings.info {
                let what: String = i
                    .split_whitespace()
                    .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                    .collect::<Vec<_>>()
                    .join(" ");
                *kp.info.entry(what).or_default() += 1;
            }
            if !o.findings.clean() {
                kp.failures.push(o);
            } else if verbose {
                kp.shown.push(o);
            }
        }
        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
        if count >= 10_000 && d.is_multiple_of(5_000) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "progress: {d}/{count} lifecycles in {secs:.0}s ({:.0}/s)",
                d as f64 / secs
            );
        }
    };
    let inflight = cli.inflight.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                runtime(endpoint.is_some()).block_on(async {
                    // One client per thread: its connections belong to this thread's runtime.
                    let backend = match &endpoint {
                        None => world::Backend::Sqlite,
                        Some(e) => world::Backend::Dynamo(world::dynamo_client(e).await),
                    };
                    let mut set = tokio::task::JoinSet::new();
                    let mut ids = std::collections::HashMap::new();
                    loop {
                        while set.len() < inflight {
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                break;
                            }
                            let k = next.fetch_add(1, Ordering::SeqCst);
                            if k >= count {
                                break;
                            }
                            let index = first + k;
                            let seed = cli.seed;
                            let h = set.spawn(CURRENT.scope(
                                (seed, index),
                                world::run(seed, index, opts, backend.clone()),
                            ));
                            ids.insert(h.id(), index);
                        }
                        match set.join_next().await {
                            None => break,
                            Some(Ok(o)) => record(o),
                            Some(Err(e)) => {
                                let index = ids.get(&e.id()).copied().unwrap_or(u64::MAX);
                                record(panic_outcome(index, e.to_string()));
                            }
                        }
                    }
                });
            });
        }
    });
    let mut kp = kept.into_inner().unwrap_or_else(|p| p.into_inner());
    let completed = done.load(Ordering::SeqCst);
    kp.failures.sort_by_key(|o| o.index);
    kp.shown.sort_by_key(|o| o.index);
    kp.digests.sort();

    for o in &kp.shown {
        println!("PASS seed={} index={}", cli.seed, o.index);
        println!("  replay: {}", replay(cli.seed, o.index, &extra));
        for l in &o.trace {
            println!("  {l}");
        }
        for l in &o.findings.info {
            println!("  info: {l}");
        }
    }
    let (mut double, mut lost, mut unrec) = (0u64, 0u64, 0u64);
    let (mut expiry, mut hands_off) = (0u64, 0u64);
    for (n, o) in kp.failures.iter().enumerate() {
        let f = &o.findings;
        double += u64::from(!f.double.is_empty());
        lost += u64::from(!f.lost.is_empty());
        unrec += u64::from(!f.unreconciled.is_empty());
        expiry += u64::from(!f.expiry.is_empty());
        hands_off += u64::from(!f.hands_off.is_empty());
        println!(
            "FAIL seed={} index={} double={} lost={} unreconciled={} expiry={} hands_off={}",
            cli.seed,
            o.index,
            f.double.len(),
            f.lost.len(),
            f.unreconciled.len(),
            f.expiry.len(),
            f.hands_off.len()
        );
        println!("  replay: {}", replay(cli.seed, o.index, &extra));
        let all: Vec<String> = f
            .double
            .iter()
            .map(|l| format!("DOUBLE: {l}"))
            .chain(f.lost.iter().map(|l| format!("LOST: {l}")))
            .chain(f.unreconciled.iter().map(|l| format!("UNRECONCILED: {l}")))
            .chain(f.expiry.iter().map(|l| format!("EXPIRY: {l}")))
            .chain(f.hands_off.iter().map(|l| format!("HANDS-OFF: {l}")))
            .collect();
        if n < cli.max_report || verbose {
            for l in &o.trace {
                println!("  {l}");
            }
            for l in &f.info {
                println!("  info: {l}");
            }
            for l in &all {
                println!("  {l}");
            }
        } else if let Some(l) = all.first() {
            println!("  {l}");
        }
    }
    // Order-independent summary of the final states, for determinism checks across --threads.
    let digest = kp
        .digests
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, (i, d)| {
            rng::mix(h ^ rng::mix(*i) ^ *d)
        });
    let info: Vec<String> = kp.info.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    let secs = started.elapsed().as_secs_f64();
    let rate = completed as f64 / secs.max(1e-9);
    // A DynamoDB run (a network round trip per store call) is far below one lifecycle a second.
    let decimals = if endpoint.is_some() { 2 } else { 0 };
    eprintln!("elapsed {secs:.1}s, {rate:.decimals$} lifecycles/s");
    println!(
        "summary: seed={} adapter-calls={} faults-fired={} digest={digest:016x}{}{}",
        cli.seed,
        kp.calls,
        kp.faults_fired,
        if info.is_empty() { "" } else { " info: " },
        info.join("; ")
    );
    // The draws of issue 12, as counts of lifecycles.
    let n = |k: &str| kp.draws.get(k).copied().unwrap_or(0);
    let ages: Vec<String> = [
        "fresh",
        "warning",
        "expired",
        "expires-during",
        "unknown-age",
        "no-authorization",
    ]
    .iter()
    .map(|a| format!("{a}={}", n(&format!("auth-age {a}"))))
    .collect();
    println!(
        "draws: auth-age[{}] hands-off[drawn={} effective={} put-back={} left-out={} twice={} twin-same={} (other-path={}) twin-differs-expired={} twin-differs={}]",
        ages.join(" "),
        n("hands-off drawn"),
        n("hands-off effective"),
        n("hands-off put back"),
        n("hands-off left out at the end"),
        n("hands-off twice"),
        n("hands-off twin same money"),
        n("hands-off twin same money, other path"),
        n("hands-off twin differs (expired while out of automation)"),
        n("hands-off twin differs"),
    );
    println!(
        "lifecycles={completed} double={double} lost={lost} unreconciled={unrec} expiry={expiry} hands_off={hands_off}"
    );
    if double + lost + unrec + expiry + hands_off == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
