//! `webhook-load`: a bounded, self-stopping load generator for paybridge's Unzer webhook endpoint.
//!
//! ```text
//! cargo run --release -p paybridge-testkit --bin webhook-load -- \
//!     --url http://127.0.0.1:8080/webhooks/unzer --public-key s-pub-… \
//!     --rate 1000 --seconds 10 --concurrency 64 [--verify-db /tmp/load.db]
//! ```
//!
//! It sends exactly `rate × seconds` distinct, valid Unzer webhook bodies (`{event, publicKey,
//! retrieveUrl, paymentId}`, a fresh `paymentId` per request so each one is a new event), paced
//! open-loop at `rate` per second with at most `concurrency` requests in flight, records the
//! latency of every acknowledgement, then prints: requests sent, acknowledged (HTTP 200),
//! errors by kind, achieved rate, and p50/p90/p99/max acknowledgement latency in ms.
//!
//! `--verify-db PATH` afterwards opens the `paybridge serve` SQLite database through
//! paybridge-core's own store (`SqliteStore` + `Repo::unapplied_events`; no SQL of its own) and
//! counts the events of this run — every `paymentId` carries the run's prefix — printing
//! `stored=N lost=sent-N`. Events for payments paybridge does not know stay stored and unapplied
//! until the order appears (by design), so every acknowledged webhook must be there. The tenant
//! whose events are counted comes from `--tenant` or from the server's `GET /health`.
//!
//! Every body names a payment paybridge does not know, so each one takes a unit of the tenant's
//! budget of unverified events (`tenant.unverified_events_per_hour`, default 2,000; past it the
//! server answers 429). To measure intake throughput, raise it in the served config (e.g.
//! `unverified_events_per_hour = 1000000`); `scripts/webhook_flood.py` measures the budget.
//!
//! Exit code 0 when every request was acknowledged (and, with `--verify-db`, every one stored);
//! 1 otherwise; 2 for unusable arguments.
//!
//! `--slow N` (slowloris mode) instead keeps N connections open for `--seconds`, each sending an
//! endless request head one byte per `--trickle-ms` (and reconnecting when the server closes
//! it), while once per second a fresh connection probes `GET /health` and another POSTs a valid
//! webhook to `--url`. It prints how many slow connections were opened and closed by the
//! server, and per probe kind how many were answered (by status), failed (by kind), and the
//! answers' p50/max latency. Exit code 0 when every probe was answered with some HTTP status.
//!
//! ```text
//! webhook-load --slow 300 --seconds 30 --url http://127.0.0.1:8080/webhooks/unzer --public-key s-pub-…
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use paybridge_core::store::repo::Repo;
use paybridge_core::store::sqlite::SqliteStore;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Load generator for POST /webhooks/unzer.
#[derive(Debug, Parser)]
#[command(name = "webhook-load", version, about)]
struct Args {
    /// The webhook URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/webhooks/unzer"
    )]
    url: String,
    /// A public key paybridge is configured with (`public_key` of a `[[method]]`).
    #[arg(long, value_name = "KEY")]
    public_key: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration in seconds; exactly rate × seconds requests are sent.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// The Unzer event name sent.
    #[arg(long, default_value = "payment.completed")]
    event: String,
    /// After the run, count this run's events in the `paybridge serve` SQLite database.
    #[arg(long, value_name = "PATH")]
    verify_db: Option<PathBuf>,
    /// Tenant id whose events are counted (default: asked from the server's GET /health).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// Slowloris mode: keep this many connections trickling an endless request head while
    /// probing /health and the webhook once per second (see the module documentation).
    #[arg(long, value_name = "N")]
    slow: Option<usize>,
    /// Slow mode: milliseconds between two bytes of a slow connection's head.
    #[arg(long, default_value_t = 1000)]
    trickle_ms: u64,
}

/// What became of one request.
#[derive(Debug)]
enum Outcome {
    /// HTTP 200: latency, and whether paybridge called it a duplicate.
    Ack { latency: Duration, duplicate: bool },
    /// Any answer but 200, or no answer: the kind of error.
    Error(String),
}

fn kind_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "reply body".into()
    } else if e.is_request() {
        "request".into()
    } else {
        "transport".into()
    }
}

/// The `p`-quantile (0 < p ≤ 1) of sorted values, nearest rank.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A prefix unique to this run (time-based), so its events can be told from earlier runs'.
fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "s-pay-load{:x}",
        (nanos as u64) ^ u64::from(std::process::id())
    )
}

fn body(args: &Args, payment_id: &str) -> String {
    serde_json::json!({
        "event": args.event,
        "publicKey": args.public_key,
        "retrieveUrl": format!("https://sbx-api.unzer.com/v1/payments/{payment_id}"),
        "paymentId": payment_id,
    })
    .to_string()
}

async fn send_one(client: &reqwest::Client, url: &str, body: String) -> Outcome {
    let started = Instant::now();
    let resp = match client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Error(kind_of(&e)),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Error(kind_of(&e)),
    };
    let latency = started.elapsed();
    if status == reqwest::StatusCode::OK {
        Outcome::Ack {
            latency,
            duplicate: text.contains("duplicate"),
        }
    } else {
        let reason = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        let reason: String = reason.chars().take(60).collect();
        Outcome::Error(format!("HTTP {} {reason}", status.as_u16()))
    }
}

/// The tenant id from `GET {origin}/health`.
async fn tenant_from_health(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let u = reqwest::Url::parse(url).context("--url is not a URL")?;
    let health = u.join("/health").context("health URL")?;
    let v: serde_json::Value = client
        .get(health.as_str())
        .send()
        .await
        .with_context(|| format!("GET {health}"))?
        .json()
        .await
        .with_context(|| format!("GET {health}: not JSON"))?;
    v["tenant"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("GET {health}: no tenant in {v}"))
}

/// Events of this run stored in the database (distinct payment ids with the run's prefix).
async fn stored_events(db: &Path, tenant: &str, prefix: &str) -> anyhow::Result<usize> {
    if !db.exists() {
        bail!("{}: no such database", db.display());
    }
    let store = SqliteStore::open(db).with_context(|| format!("open {}", db.display()))?;
    let events = Repo::new(&store)
        .unapplied_events(tenant, usize::MAX, chrono::Utc::now())
        .await
        .with_context(|| format!("read the events of tenant {tenant}"))?;
    let ours: HashSet<&str> = events
        .iter()
        .filter(|e| e.payment_id.starts_with(prefix))
        .map(|e| e.payment_id.as_str())
        .collect();
    Ok(ours.len())
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if args.rate == 0 || args.seconds == 0 || args.concurrency == 0 {
        bail!("--rate, --seconds and --concurrency must be at least 1");
    }
    let total = args
        .rate
        .checked_mul(args.seconds)
        .filter(|t| *t <= 100_000_000)
        .context("rate × seconds must be at most 100,000,000 requests")?;
    reqwest::Url::parse(&args.url).context("--url is not a URL")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(args.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("HTTP client")?;
    let tenant = match (&args.verify_db, &args.tenant) {
        (None, _) => None,
        (Some(_), Some(t)) => Some(t.clone()),
        (Some(_), None) => Some(tenant_from_health(&client, &args.url).await?),
    };
    let prefix = run_prefix();
    println!(
        "webhook-load: POST {} rate={}/s seconds={} concurrency={} requests={total} run={prefix}",
        args.url, args.rate, args.seconds, args.concurrency
    );

    let args = Arc::new(args);
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let start = tokio::time::Instant::now();
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        // Open loop: request i is due at start + i / rate.
        let due = start + interval.mul_f64(i as f64);
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("semaphore closed")?;
        max_lag = max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let (client, args, tx) = (client.clone(), Arc::clone(&args), tx.clone());
        let payment_id = format!("{prefix}x{i}");
        tokio::spawn(async move {
            let outcome = send_one(&client, &args.url, body(&args, &payment_id)).await;
            let _ = tx.send(outcome);
            drop(permit);
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut duplicates = 0u64;
    while let Some(o) = rx.recv().await {
        match o {
            Outcome::Ack { latency, duplicate } => {
                latencies.push(latency);
                duplicates += u64::from(duplicate);
            }
            Outcome::Error(kind) => *errors.entry(kind).or_default() += 1,
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let acked = latencies.len() as u64;
    let failed: u64 = errors.values().sum();

    println!("sent={total} acknowledged={acked} duplicates={duplicates} errors={failed}");
    if errors.is_empty() {
        println!("errors by kind: none");
    } else {
        println!("errors by kind:");
        for (kind, n) in &errors {
            println!("  {n:>8}  {kind}");
        }
    }
    println!(
        "duration={:.2}s achieved_rate={:.1}/s max_send_lag={:.1}ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(max_lag)
    );
    println!(
        "ack latency ms: p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        ms(quantile(&latencies, 0.50)),
        ms(quantile(&latencies, 0.90)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    let mut ok = acked == total;
    if let (Some(db), Some(tenant)) = (&args.verify_db, &tenant) {
        let stored = stored_events(db, tenant, &prefix).await?;
        let lost = total as i64 - stored as i64;
        println!(
            "stored={stored} lost={lost} (tenant {tenant}, {})",
            db.display()
        );
        ok &= lost == 0;
    }
    Ok(ok)
}

/// Counters of the slow connections.
#[derive(Default)]
struct SlowCounts {
    opened: std::sync::atomic::AtomicU64,
    closed_by_server: std::sync::atomic::AtomicU64,
    connect_errors: std::sync::atomic::AtomicU64,
}

/// One slow connection after another (reconnecting when the server closes one) until `until`.
async fn slow_client(
    addr: String,
    head: String,
    trickle: Duration,
    until: tokio::time::Instant,
    counts: Arc<SlowCounts>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while tokio::time::Instant::now() < until {
        let connect = tokio::net::TcpStream::connect(&addr);
        let stream = match tokio::time::timeout_at(until, connect).await {
            Err(_) => return,
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                counts.connect_errors.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        counts.opened.fetch_add(1, Relaxed);
        let (mut r, mut w) = stream.into_split();
        let mut bytes = head.bytes().chain(std::iter::repeat(b'a'));
        let mut buf = [0u8; 512];
        let closed = loop {
            let byte = bytes.next().unwrap_or(b'a');
            if w.write_all(&[byte]).await.is_err() {
                break true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => break false,
                () = tokio::time::sleep(trickle) => {}
                read = r.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break true,
                    Ok(_) => {} // an answer to an endless head: keep going until closed
                },
            }
        };
        if closed {
            counts.closed_by_server.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The outcomes of one probe kind.
#[derive(Default)]
struct ProbeLog {
    answered: BTreeMap<u16, u64>,
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

impl ProbeLog {
    fn sent(&self) -> u64 {
        self.answered.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }

    fn all_answered(&self) -> bool {
        self.errors.is_empty() && self.sent() > 0
    }

    fn print(&mut self, what: &str) {
        self.latencies.sort_unstable();
        let answered: u64 = self.answered.values().sum();
        let by_status: Vec<String> = self
            .answered
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        println!(
            "probe {what}: sent={} answered={answered} [{}] failed={} [{}] latency ms p50={:.2} max={:.2}",
            self.sent(),
            by_status.join(" "),
            self.errors.values().sum::<u64>(),
            errors.join(" "),
            ms(quantile(&self.latencies, 0.5)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        );
    }
}

/// Any HTTP answer (status and latency) or the kind of failure.
async fn probe(request: reqwest::RequestBuilder) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let resp = request.send().await.map_err(|e| kind_of(&e))?;
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(|e| kind_of(&e))?;
    Ok((status, started.elapsed()))
}

/// `--slow N`: see the module documentation.
async fn run_slow(args: Args, slow: usize) -> anyhow::Result<bool> {
    if args.seconds == 0 || args.trickle_ms == 0 {
        bail!("--seconds and --trickle-ms must be at least 1");
    }
    let url = reqwest::Url::parse(&args.url).context("--url is not a URL")?;
    let host = url.host_str().context("--url has no host")?.to_string();
    let port = url.port_or_known_default().context("--url has no port")?;
    let addr = format!("{host}:{port}");
    let health = url.join("/health").context("health URL")?;
    let head = format!("POST {} HTTP/1.1\r\nHost: {host}\r\nX-Slow: ", url.path());
    // A fresh connection per probe: what a new client meets.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .connect_timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("HTTP client")?;
    println!(
        "webhook-load --slow: {slow} connections trickling 1 byte/{}ms to {addr} for {}s; probing {health} and POST {} once per second (timeout {}ms)",
        args.trickle_ms, args.seconds, args.url, args.timeout_ms
    );
    let start = tokio::time::Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let counts = Arc::new(SlowCounts::default());
    let mut slow_tasks = Vec::with_capacity(slow);
    for _ in 0..slow {
        slow_tasks.push(tokio::spawn(slow_client(
            addr.clone(),
            head.clone(),
            Duration::from_millis(args.trickle_ms),
            until,
            Arc::clone(&counts),
        )));
    }
    let prefix = run_prefix();
    let mut probes = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The first probes after a second, when the slow connections are open.
    tick.tick().await;
    for i in 0..args.seconds {
        tick.tick().await;
        let get = client.get(health.as_str());
        let post = client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body(&args, &format!("{prefix}s{i}")));
        probes.push(tokio::spawn(async move {
            tokio::join!(probe(get), probe(post))
        }));
    }
    let mut health_log = ProbeLog::default();
    let mut hook_log = ProbeLog::default();
    for p in probes {
        let (h, w) = p.await.context("probe task")?;
        for (log, outcome) in [(&mut health_log, h), (&mut hook_log, w)] {
            match outcome {
                Ok((status, latency)) => {
                    *log.answered.entry(status).or_default() += 1;
                    log.latencies.push(latency);
                }
                Err(kind) => *log.errors.entry(kind).or_default() += 1,
            }
        }
    }
    for t in slow_tasks {
        let _ = t.await;
    }
    use std::sync::atomic::Ordering::Relaxed;
    println!(
        "slow connections: opened={} closed_by_server={} connect_errors={} duration={:.1}s",
        counts.opened.load(Relaxed),
        counts.closed_by_server.load(Relaxed),
        counts.connect_errors.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
    health_log.print("GET /health");
    hook_log.print(&format!("POST {}", url.path()));
    Ok(health_log.all_answered() && hook_log.all_answered())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.slow {
        Some(n) if n > 0 => run_slow(args, n).await,
        _ => run(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("webhook-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_probe_kind_passes_only_when_every_probe_was_answered() {
        let mut log = ProbeLog::default();
        assert!(!log.all_answered(), "no probe sent is no proof");
        *log.answered.entry(401).or_default() += 2;
        assert!(log.all_answered(), "any HTTP status is an answer");
        *log.errors.entry("timeout".into()).or_default() += 1;
        assert_eq!(log.sent(), 3);
        assert!(!log.all_answered());
    }

    #[test]
    fn slow_mode_is_chosen_by_its_flag() {
        let args = Args::parse_from(["webhook-load", "--public-key", "k", "--slow", "300"]);
        assert_eq!(args.slow, Some(300));
        assert_eq!(args.trickle_ms, 1000);
        let args = Args::parse_from(["webhook-load", "--public-key", "k"]);
        assert_eq!(args.slow, None);
    }

    #[test]
    fn bodies_are_valid_distinct_webhooks() {
        let args = Args::parse_from(["webhook-load", "--public-key", "s-pub-x"]);
        let a: serde_json::Value = serde_json::from_str(&body(&args, "s-pay-loadx1")).unwrap();
        assert_eq!(a["publicKey"], "s-pub-x");
        assert_eq!(a["paymentId"], "s-pay-loadx1");
        assert!(
            run_prefix().len() <= 40,
            "payment ids stay within 64 characters"
        );
    }
}
