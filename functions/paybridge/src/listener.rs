//! The HTTP listener of `paybridge serve`: an accept loop of its own over hyper's HTTP/1
//! connection, so that slow or idle clients cannot exhaust the process (issue 11).
//!
//! Every connection lives in one of three phases, and each phase is bounded ([`Limits`]):
//!
//! - **head**: a request head is arriving (a new connection counts from its accept, a kept-alive
//!   one from the first byte of its next request). The whole head must be in within
//!   [`Limits::header_read_timeout`], else the connection is closed.
//! - **busy**: a request was dispatched to the router and its response is not written yet. Its
//!   body must be in within [`Limits::body_read_timeout`] of the head; a body cut off by that
//!   deadline is answered 408 and the connection closed. The router's own work is not bounded
//!   here.
//! - **idle**: kept alive with no request in flight; closed after [`Limits::idle_timeout`].
//!
//! (hyper's own `header_read_timeout` is switched off: its timer runs from the moment hyper
//! waits for a head, idle time included, so it cannot tell a slow head from an idle keep-alive.)
//!
//! At most [`Limits::max_connections`] connections are open (by default derived from the
//! `RLIMIT_NOFILE` soft limit, leaving descriptors for SQLite and outbound HTTP). A client
//! arriving at the cap is not turned away: the connection that has been idle or sending its head
//! the longest is closed for it (logged at warn level, rate-limited, with a running count), and
//! the new one is served as soon as that has closed. Only when every connection has a request in
//! flight does accepting pause until one finishes. Accept
//! errors (`EMFILE`, `ENFILE`, ...) are logged, an idle connection is given up, and accepting
//! resumes after a short pause: the loop neither spins nor ends on them.
//!
//! Stopping: accepting ends, connections without a request in flight are closed at once (a
//! half-sent head does not hold the stop up), requests in flight finish (hyper's
//! `graceful_shutdown`), then [`Server::run`] returns.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How long a request head (request line and headers) may take to arrive.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive in full, counted from the end of its head.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most connections the default cap allows, whatever the descriptor limit.
pub const MAX_CONNECTIONS_CEILING: usize = 1024;
/// Pause of the accept loop after an accept error (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// A repeated warning (evictions, timeouts, accept errors) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The bounds the listener enforces; [`Limits::default`] is what `paybridge serve` uses, tests
/// shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Most connections open at once (at least 1); see [`default_max_connections`].
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

/// `min(MAX_CONNECTIONS_CEILING, soft RLIMIT_NOFILE × 3/4)`: a quarter of the descriptors stays
/// for the SQLite files, outbound HTTP (PSP, ERP, SMTP) and the listener itself.
pub fn default_max_connections() -> usize {
    max_connections_for(soft_nofile_limit())
}

fn max_connections_for(soft_limit: Option<u64>) -> usize {
    match soft_limit {
        None => MAX_CONNECTIONS_CEILING,
        Some(soft) => {
            let three_quarters = soft.saturating_mul(3) / 4;
            usize::try_from(three_quarters.clamp(1, MAX_CONNECTIONS_CEILING as u64))
                .unwrap_or(MAX_CONNECTIONS_CEILING)
        }
    }
}

/// The soft limit on open files; `None` when unlimited (or unknown on this platform).
#[cfg(unix)]
fn soft_nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn soft_nofile_limit() -> Option<u64> {
    None
}

/// Out of descriptors (process or system): giving up an idle connection helps.
#[cfg(unix)]
fn out_of_descriptors(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let code = e.raw_os_error();
    code == Some(Errno::MFILE.raw_os_error()) || code == Some(Errno::NFILE.raw_os_error())
}

#[cfg(not(unix))]
fn out_of_descriptors(_: &io::Error) -> bool {
    false
}

/// An accept error about the one connection that was being accepted (it is gone; the next
/// accept may succeed at once).
fn only_that_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// A listener with its limits; [`Server::stats`] observes it while [`Server::run`] serves.
pub struct Server {
    shared: Arc<Shared>,
}

/// Counters of a [`Server`], readable while it runs.
#[derive(Clone)]
pub struct Stats {
    shared: Arc<Shared>,
}

impl Stats {
    /// Connections open right now (including those asked to close that have not yet closed).
    pub fn open_connections(&self) -> usize {
        self.shared.lock_conns().len()
    }

    /// Connections closed to make room for a new one.
    pub fn evicted(&self) -> u64 {
        self.shared.evictions.total()
    }

    /// Connections closed because their head did not arrive in time.
    pub fn header_timeouts(&self) -> u64 {
        self.shared.header_timeouts.total()
    }

    /// Requests cut off because their body did not arrive in time.
    pub fn body_timeouts(&self) -> u64 {
        self.shared.body_timeouts.total()
    }
}

impl Server {
    pub fn new(limits: Limits) -> Server {
        let limits = Limits {
            max_connections: limits.max_connections.max(1),
            ..limits
        };
        Server {
            shared: Arc::new(Shared {
                limits,
                conns: Mutex::new(BTreeMap::new()),
                room: Notify::new(),
                next_id: AtomicU64::new(0),
                evictions: Occurrences::new(
                    "connection limit reached: closed the connection idle or sending its head the longest",
                ),
                header_timeouts: Occurrences::new(
                    "closed a connection whose request head did not arrive in time",
                ),
                body_timeouts: Occurrences::new(
                    "cut off a request whose body did not arrive in time (408)",
                ),
                accept_errors: Occurrences::new("accepting a connection failed; retrying shortly"),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    pub fn stats(&self) -> Stats {
        Stats {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves `router` on `listener` until `shutdown` resolves, then stops as the module
    /// describes and returns once every connection is closed.
    pub async fn run(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let shared = self.shared;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    if !shared.make_room(&mut shutdown).await {
                        break;
                    }
                    shared.admit(stream, router.clone());
                }
                Err(e) if only_that_connection(&e) => {
                    tracing::debug!(error = %e, "a connection went away while being accepted");
                }
                Err(e) => {
                    shared.accept_errors.record_error(&e);
                    if out_of_descriptors(&e) {
                        shared.evict_one();
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            }
        }
        drop(listener);
        shared.close_all();
        shared.wait_until_empty().await;
    }
}

/// State of the listener shared by the accept loop and every connection task.
struct Shared {
    limits: Limits,
    /// Every open connection by id (ids grow with the accept order).
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    /// Notified when a connection closed or finished a request: the accept loop, waiting at the
    /// cap or for the last connection at a stop, looks again.
    room: Notify,
    next_id: AtomicU64,
    evictions: Occurrences,
    header_timeouts: Occurrences,
    body_timeouts: Occurrences,
    accept_errors: Occurrences,
}

impl Shared {
    fn lock_conns(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // A panic while holding the map leaves it consistent (single inserts and removes).
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the new connection may be served: below the cap at once; at the cap after
    /// one connection without a request in flight was asked to close and has closed (a matter
    /// of one wake-up of its task), so the descriptors in use never exceed the cap by more than
    /// the one accepted socket; when every connection is busy, until one is not. `false` when
    /// `shutdown` resolved meanwhile.
    async fn make_room<F: Future<Output = ()>>(&self, shutdown: &mut Pin<&mut F>) -> bool {
        loop {
            {
                let conns = self.lock_conns();
                if conns.len() < self.limits.max_connections {
                    return true;
                }
                let closing = conns.values().any(|c| c.close_requested() && !c.busy());
                if !closing {
                    // When none is evictable (all busy), this waits for a request to finish.
                    self.evict_from(&conns);
                }
            }
            tokio::select! {
                () = self.room.notified() => {}
                () = shutdown.as_mut() => return false,
            }
        }
    }

    /// Asks the connection idle or sending its head the longest to close; `false` when every
    /// connection has a request in flight (or is closing already).
    fn evict_from(&self, conns: &BTreeMap<u64, Arc<Conn>>) -> bool {
        let victim = conns
            .values()
            .filter(|c| !c.close_requested())
            .filter_map(|c| c.waiting_since().map(|since| (since, c)))
            .min_by_key(|(since, c)| (*since, c.id));
        match victim {
            Some((_, c)) => {
                c.request_close();
                self.evictions.record(self.limits.max_connections);
                true
            }
            None => false,
        }
    }

    fn evict_one(&self) {
        let conns = self.lock_conns();
        self.evict_from(&conns);
    }

    fn admit(self: &Arc<Self>, stream: TcpStream, router: Router) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            phase: Mutex::new(Phase::Head(Instant::now())),
            wake: Notify::new(),
            close: AtomicBool::new(false),
        });
        self.lock_conns().insert(id, Arc::clone(&conn));
        let registered = Registered {
            conn,
            shared: Arc::clone(self),
        };
        tokio::spawn(serve_connection(stream, registered, router));
    }

    fn close_all(&self) {
        for c in self.lock_conns().values() {
            c.request_close();
        }
    }

    async fn wait_until_empty(&self) {
        loop {
            if self.lock_conns().is_empty() {
                return;
            }
            self.room.notified().await;
        }
    }
}

/// Where a connection is; see the module documentation.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Kept alive, waiting for the next request since then.
    Idle(Instant),
    /// Receiving a request head since then.
    Head(Instant),
    /// This many requests dispatched whose responses are not yet written.
    Busy(usize),
}

/// One open connection, as the accept loop and the connection's task see it.
struct Conn {
    id: u64,
    phase: Mutex<Phase>,
    /// Wakes the connection's task: its phase changed, or it was asked to close.
    wake: Notify,
    /// Asked to close (evicted, or the listener stops).
    close: AtomicBool,
}

impl Conn {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn busy(&self) -> bool {
        matches!(*self.phase(), Phase::Busy(_))
    }

    /// Since when it has been idle or sending its head; `None` while a request is in flight.
    fn waiting_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle(t) | Phase::Head(t) => Some(t),
            Phase::Busy(_) => None,
        }
    }

    /// When the current phase runs out: `None` while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle(t) => Some(t + limits.idle_timeout),
            Phase::Head(t) => Some(t + limits.header_read_timeout),
            Phase::Busy(_) => None,
        }
    }

    fn close_requested(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }

    fn request_close(&self) {
        self.close.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn saw_bytes(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.wake.notify_one();
        }
    }
}

/// A connection's entry in [`Shared::conns`], removed when its task ends.
struct Registered {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.lock_conns().remove(&self.conn.id);
        self.shared.room.notify_one();
    }
}

/// One request of a connection in flight, from its dispatch until its response body is
/// written (dropped); the last one ending makes the connection idle.
struct InFlight {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl InFlight {
    fn begin(conn: &Arc<Conn>, shared: &Arc<Shared>) -> InFlight {
        let mut phase = conn.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Idle(_) | Phase::Head(_) => Phase::Busy(1),
        };
        drop(phase);
        InFlight {
            conn: Arc::clone(conn),
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.conn.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        drop(phase);
        self.conn.wake.notify_one();
        self.shared.room.notify_one();
    }
}

/// Runs one connection until it ends, times out, or is asked to close.
async fn serve_connection(stream: TcpStream, registered: Registered, router: Router) {
    let conn = Arc::clone(&registered.conn);
    let shared = Arc::clone(&registered.shared);
    let io = TokioIo::new(Tracked {
        stream,
        conn: Arc::clone(&conn),
    });
    let service = ConnService {
        router,
        conn: Arc::clone(&conn),
        shared: Arc::clone(&shared),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        if conn.close_requested() && !draining {
            if !conn.busy() {
                return;
            }
            // A request is in flight: it finishes, then hyper closes the connection.
            connection.as_mut().graceful_shutdown();
            draining = true;
        }
        let deadline = if draining {
            None
        } else {
            conn.deadline(&shared.limits)
        };
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = conn.wake.notified() => {}
            () = sleep_until(deadline) => {
                let phase = *conn.phase();
                if conn.deadline(&shared.limits).is_some_and(|d| d <= Instant::now()) {
                    match phase {
                        Phase::Head(_) => shared.header_timeouts.record(shared.limits.max_connections),
                        _ => tracing::debug!("closed an idle keep-alive connection"),
                    }
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The connection's socket, telling its [`Conn`] when bytes arrive.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.saw_bytes();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The router as hyper calls it for one connection: marks the request in flight until its
/// response is written, and puts the body deadline on the request body.
struct ConnService {
    router: Router,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.conn, &self.shared);
        let deadline = Instant::now() + self.shared.limits.body_read_timeout;
        let cut = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            Body::new(DeadlineBody {
                inner: body,
                deadline,
                sleep: None,
                cut: Arc::clone(&cut),
            })
        });
        let router = self.router.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let response = match tower::ServiceExt::oneshot(router, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let response = if cut.load(Ordering::Acquire) {
                shared.body_timeouts.record(shared.limits.max_connections);
                body_timeout_response()
            } else {
                response
            };
            Ok(response.map(|body| {
                Body::new(HoldBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body holding its request's [`InFlight`] until hyper has written and dropped it.
struct HoldBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for HoldBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// 408 `{"error": ..}`, closing the connection (the rest of the body is not awaited).
fn body_timeout_response() -> Response<Body> {
    let body = serde_json::json!({ "error": "request body not received in time" }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
struct BodyTimedOut;

/// A request body that fails once `deadline` has passed before it was complete.
struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Armed on the first poll that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set when the deadline cut the body off.
    cut: Arc<AtomicBool>,
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.cut.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A warning that can repeat under attack: counted always, logged the first time and then at
/// most every [`WARN_EVERY`] with the running total.
struct Occurrences {
    message: &'static str,
    total: AtomicU64,
    last_logged: Mutex<Option<(Instant, u64)>>,
}

impl Occurrences {
    fn new(message: &'static str) -> Occurrences {
        Occurrences {
            message,
            total: AtomicU64::new(0),
            last_logged: Mutex::new(None),
        }
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts one; `Some(since the last log)` when it is to be logged now.
    fn count(&self) -> Option<(u64, u64)> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let due = last.is_none_or(|(at, _)| now.duration_since(at) >= WARN_EVERY);
        if !due {
            return None;
        }
        let before = last.map_or(0, |(_, n)| n);
        *last = Some((now, total));
        Some((total, total - before))
    }

    fn record(&self, max_connections: usize) {
        if let Some((total, since_last_log)) = self.count() {
            tracing::warn!(total, since_last_log, max_connections, "{}", self.message);
        }
    }

    fn record_error(&self, error: &io::Error) {
        if let Some((total, since_last_log)) = self.count() {
            tracing::warn!(error = %error, total, since_last_log, "{}", self.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_quarter_of_the_descriptors() {
        assert_eq!(max_connections_for(Some(256)), 192);
        assert_eq!(max_connections_for(Some(1024)), 768);
        assert_eq!(
            max_connections_for(Some(1_048_576)),
            MAX_CONNECTIONS_CEILING
        );
        assert_eq!(max_connections_for(None), MAX_CONNECTIONS_CEILING);
        assert_eq!(max_connections_for(Some(1)), 1, "never zero");
        assert_eq!(max_connections_for(Some(u64::MAX)), MAX_CONNECTIONS_CEILING);
    }

    #[test]
    fn repeated_warnings_are_counted_but_logged_once_per_interval() {
        let o = Occurrences::new("test");
        assert_eq!(o.count(), Some((1, 1)), "the first one is logged");
        assert_eq!(o.count(), None);
        assert_eq!(o.count(), None);
        assert_eq!(o.total(), 3);
    }
}
