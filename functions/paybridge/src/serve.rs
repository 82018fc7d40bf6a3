//! `paybridge serve`: builds the [`App`] once (SQLite store and queue on one file, the
//! connectors from [`crate::startup`]) and runs three things concurrently until Ctrl-C or SIGTERM:
//!
//! - the poller: [`App::poll_cycle`] at once and then every `server.poll_interval_secs`;
//! - the worker: [`App::work_once`] in a loop; when the queue is empty it waits until a job is
//!   enqueued (the embedded queue wakes it) or briefly at most;
//! - the HTTP listener on `server.listen` ([`crate::http::router`] under
//!   [`crate::listener::Server`], which bounds slow, idle and surplus connections).
//!
//! On a signal every part finishes what it is doing (a poll cycle, a batch of jobs, in-flight
//! requests) and stops; after [`SHUTDOWN_GRACE`] the process exits anyway. Nothing is lost by
//! that: the ledger marks in-flight steps and the queue redelivers unacknowledged jobs.
//!
//! In-process use (tests, `paybridge demo`): [`spawn`] runs the same three parts in the
//! background until [`Background::shutdown`]; [`spawn_http`] runs only the listener, for callers
//! that drive [`App::poll_cycle`] and [`App::work_once`] themselves on a simulated clock;
//! [`spawn_worker`] runs only the worker.

use crate::cli::{AwsArgs, Backend, ServeArgs};
use crate::http;
use crate::listener::{self, Limits};
use crate::startup::{self, Prepared, StartError};
use chrono::Utc;
use paybridge_core::app::{App, Settings};
use paybridge_core::queue::sqlite::SqliteQueue;
use paybridge_core::store::sqlite::SqliteStore;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Jobs received per worker round.
const BATCH: usize = 10;
/// Pause of the worker when the queue had nothing visible.
const IDLE: Duration = Duration::from_millis(200);
/// Pause of the worker after a queue error.
const QUEUE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long a stopping process waits for its parts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Receives per message before the embedded queue dead-letters it. Well above
/// `Settings::max_attempts`, so the app gives up on an operation (and flags it for a human)
/// before the queue would silently park it.
const MAX_RECEIVES: u32 = 50;

/// Why `paybridge serve` ended with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    /// The listener failed after the start (the error is in the message, not a source, so it
    /// is printed once).
    #[error("the HTTP listener failed: {0}")]
    Http(String),
}

impl ServeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Start(e) => e.exit_code(),
            ServeError::Http(_) => 1,
        }
    }
}

/// Entry point of `paybridge serve`.
pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let prepared = startup::prepare(&args.backend.config)?;
    if args.no_check {
        tracing::info!("start-up reachability check skipped (--no-check)");
    } else {
        startup::check_reachable(&prepared.targets).await?;
    }
    let listen = prepared.config.server.listen;
    let poll_every = Duration::from_secs(prepared.config.server.poll_interval_secs);
    let (app, database) = open_app(prepared, &args.backend).await?;
    let app = Arc::new(app);
    let limits = Limits::default();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| StartError::Listen {
            addr: listen.to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(
        tenant = %app.config.tenant.id,
        listen = %listen,
        database = %database.display(),
        poll_interval_secs = poll_every.as_secs(),
        max_connections = limits.max_connections,
        "paybridge serving"
    );
    run(app, listener, limits, poll_every, shutdown_signal()).await
}

/// The app on the backends `backend` names (SQLite file by default, or DynamoDB / SQS), and
/// the SQLite file's path.
pub async fn open_app(
    prepared: Prepared,
    backend: &Backend,
) -> Result<(App, std::path::PathBuf), StartError> {
    let database = match &backend.database {
        Some(p) => p.clone(),
        None => prepared.resolve(&prepared.config.server.database),
    };
    let mut app = build_app(prepared, &database)?;
    use_aws_backends(&mut app, backend).await?;
    Ok((app, database))
}

/// `--store dynamodb` / `--queue sqs`: the AWS backends the Lambda functions use, here in one
/// process (with `--aws-endpoint`, e.g. on moto). Table and queue are created when missing.
async fn use_aws_backends(app: &mut App, args: &Backend) -> Result<(), StartError> {
    use crate::cli::{QueueKind, StoreKind};
    if args.store == StoreKind::Sqlite && args.queue == QueueKind::Sqlite {
        return Ok(());
    }
    let cfg = aws_sdk_config(&args.aws).await;
    if args.store == StoreKind::Dynamodb {
        let client = create_table(&cfg, &args.aws).await?;
        app.store = Arc::new(paybridge_core::store::dynamo::DynamoStore::new(
            client,
            args.aws.table.clone(),
        ));
    }
    if args.queue == QueueKind::Sqs {
        app.queue = Arc::new(create_queue(&cfg, &args.aws).await?);
    }
    Ok(())
}

/// `paybridge aws-setup`: the table and the queue `serve` would create; the queue's URL.
pub async fn aws_setup(args: &AwsArgs) -> Result<String, StartError> {
    let cfg = aws_sdk_config(args).await;
    create_table(&cfg, args).await?;
    Ok(create_queue(&cfg, args).await?.queue_url().to_string())
}

async fn aws_sdk_config(args: &AwsArgs) -> aws_config::SdkConfig {
    let mut loader = paybridge_core::aws::sdk_defaults();
    if let Some(url) = &args.aws_endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

fn aws_error(args: &AwsArgs, reason: String) -> StartError {
    StartError::Database {
        path: args.aws_endpoint.clone().unwrap_or_else(|| "AWS".into()),
        reason,
    }
}

async fn create_table(
    cfg: &aws_config::SdkConfig,
    args: &AwsArgs,
) -> Result<aws_sdk_dynamodb::Client, StartError> {
    let client = aws_sdk_dynamodb::Client::new(cfg);
    paybridge_core::store::dynamo::DynamoStore::create_table(&client, &args.table)
        .await
        .map_err(|e| aws_error(args, e.to_string()))?;
    Ok(client)
}

async fn create_queue(
    cfg: &aws_config::SdkConfig,
    args: &AwsArgs,
) -> Result<paybridge_core::queue::sqs::SqsQueue, StartError> {
    let client = aws_sdk_sqs::Client::new(cfg);
    let (queue, _dlq) =
        paybridge_core::queue::sqs::SqsQueue::create(&client, &args.queue_name, MAX_RECEIVES)
            .await
            .map_err(|e| aws_error(args, e.to_string()))?;
    Ok(queue)
}

/// The app over a SQLite store and queue sharing the file at `database`.
pub fn build_app(prepared: Prepared, database: &Path) -> Result<App, StartError> {
    let db_error = |reason: String| StartError::Database {
        path: database.display().to_string(),
        reason,
    };
    let store = SqliteStore::open(database).map_err(|e| db_error(e.to_string()))?;
    let queue = SqliteQueue::sharing(&store, MAX_RECEIVES).map_err(|e| db_error(e.to_string()))?;
    Ok(App {
        config: prepared.config,
        store: Arc::new(store),
        queue: Arc::new(queue),
        erps: prepared.erps,
        psp: prepared.psp,
        notifier: prepared.notifier,
        settings: Settings::default(),
        holder: format!("paybridge-serve-{}", std::process::id()),
    })
}

/// `paybridge serve` running in the background of the current runtime: poller, worker and
/// listener exactly as the command runs them, stopped by [`Background::shutdown`] instead of a
/// signal.
pub struct Background {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Background {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks every part to finish what it is doing and waits for them (at most
    /// [`SHUTDOWN_GRACE`], like a signal does).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.stop.send_replace(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Http(format!("the serve task failed: {e}"))),
        }
    }
}

/// Starts poller, worker and listener (on `listener`) in the background; see [`Background`].
pub fn spawn(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    poll_every: Duration,
) -> std::io::Result<Background> {
    let addr = listener.local_addr()?;
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        app,
        listener,
        Limits::default(),
        poll_every,
        stopped(rx),
    ));
    Ok(Background { addr, stop, task })
}

/// Only the HTTP listener of `serve` ([`crate::http::router`]) in the background: for callers
/// that poll and work themselves (`paybridge demo`, the scenario tests), so webhooks still
/// arrive over a real socket.
pub struct HttpHandle {
    addr: SocketAddr,
    stats: listener::Stats,
    stop: watch::Sender<bool>,
    /// Taken by [`HttpHandle::shutdown`].
    task: Option<JoinHandle<()>>,
}

impl HttpHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's counters (open connections, evictions, timeouts).
    pub fn stats(&self) -> &listener::Stats {
        &self.stats
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, closes the connections without a request in flight, lets in-flight
    /// requests finish, and waits for the listener to end.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop.send_replace(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        task.await
            .map_err(|e| ServeError::Http(format!("the listener task failed: {e}")))
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        // A handle dropped without `shutdown` still stops its listener.
        self.stop.send_replace(true);
    }
}

/// Serves [`crate::http::router`] on `listener` in the background with the listener's default
/// [`Limits`]; see [`HttpHandle`].
pub fn spawn_http(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<HttpHandle> {
    spawn_http_with(app, listener, Limits::default())
}

/// [`spawn_http`] with other [`Limits`] (the listener tests shorten the timeouts).
pub fn spawn_http_with(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    limits: Limits,
) -> std::io::Result<HttpHandle> {
    let addr = listener.local_addr()?;
    let (stop, rx) = watch::channel(false);
    let server = listener::Server::new(limits);
    let stats = server.stats();
    let task = tokio::spawn(server.run(listener, http::router(app), stopped(rx)));
    Ok(HttpHandle {
        addr,
        stats,
        stop,
        task: Some(task),
    })
}

/// Only the worker of `serve` in the background, for callers that poll themselves but want
/// jobs run as `serve` runs them (woken by the enqueue): the prepayment latency bench.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Lets the worker finish its batch and waits for it.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Starts `serve`'s worker loop on `app` in the background; see [`WorkerHandle`].
pub fn spawn_worker(app: Arc<App>) -> WorkerHandle {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move { work_loop(&app, rx).await });
    WorkerHandle { stop, task }
}

/// Runs poller, worker and listener until `shutdown` resolves (or until one of them ends, which
/// stops the others too).
async fn run(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    poll_every: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = &stop_tx;
    let server = async {
        listener::Server::new(limits)
            .run(
                listener,
                http::router(Arc::clone(&app)),
                stopped(stop_rx.clone()),
            )
            .await;
        stop.send_replace(true);
    };
    let poller = async {
        poll_loop(&app, poll_every, stop_rx.clone()).await;
        stop.send_replace(true);
    };
    let worker = async {
        work_loop(&app, stop_rx.clone()).await;
        stop.send_replace(true);
    };
    let signal = async {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested: finishing the current work"),
            () = stopped(stop_rx.clone()) => {}
        }
        stop.send_replace(true);
    };
    let all = async {
        tokio::join!(server, poller, worker, signal);
    };
    let grace = async {
        stopped(stop_rx.clone()).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = all => {
            tracing::info!("paybridge stopped");
            Ok(())
        }
        () = grace => {
            tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "not everything stopped in time; exiting anyway");
            Ok(())
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn poll_loop(app: &App, every: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_quiet_hours = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(stop.clone()) => return,
        }
        let now = Utc::now();
        match app.quiet_until(now) {
            Some(until) if !in_quiet_hours => {
                tracing::info!(until = %until, "quiet hours: the ERP is left alone until then");
                in_quiet_hours = true;
            }
            None if in_quiet_hours => {
                tracing::info!("quiet hours over");
                in_quiet_hours = false;
            }
            _ => {}
        }
        match app.poll_cycle(now).await {
            Ok(r)
                if r.orders_seen
                    + r.ops_planned
                    + r.swept_ops
                    + r.swept_events
                    + r.swept_rechecks
                    > 0 =>
            {
                tracing::info!(
                    orders_seen = r.orders_seen,
                    ops_planned = r.ops_planned,
                    swept_ops = r.swept_ops,
                    swept_events = r.swept_events,
                    "poll cycle"
                )
            }
            Ok(r) => tracing::debug!(
                held_quiet_hours = r.held_quiet_hours,
                held_lease = r.held_lease,
                "poll cycle: nothing new"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "poll cycle failed; next try at the next interval")
            }
        }
    }
}

async fn work_loop(app: &App, stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let pause = match app.work_once(BATCH, Utc::now()).await {
            Ok(0) => IDLE,
            Ok(n) => {
                tracing::debug!(jobs = n, "worker: jobs handled");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker: queue failed");
                QUEUE_ERROR_PAUSE
            }
        };
        tokio::select! {
            () = app.queue.wait_for_work(pause) => {}
            () = stopped(stop.clone()) => return,
        }
    }
}
