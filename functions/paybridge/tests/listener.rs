//! The listener's limits over real loopback sockets ([`paybridge::listener`], run by
//! [`serve::spawn_http_with`] with shortened [`Limits`]): slow heads, idle keep-alives and
//! stalled bodies are cut off, an oversized `Content-Length` is refused up front, the
//! connection cap evicts instead of starving new clients, and a stop does not wait for
//! half-sent requests. The app is the example configuration's (in-memory ERP and PSP).
//!
//! Time bounds are generous: a closure must come no earlier than the configured limit (less a
//! little for the client starting its clock after the server) and well before anything else
//! could have caused it.

use paybridge::listener::Limits;
use paybridge::serve::{self, HttpHandle};
use paybridge::startup;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The example configuration's public key (its three methods share it). They are methods of
/// the in-memory PSP, so webhooks go to `/webhooks/memory`: the same route and handler as
/// `/webhooks/unzer` (which answers 401 for this key).
const PUBLIC_KEY: &str = "s-pub-2a10DEMO0000000000000000demo";
/// How much earlier than the server the client may start its clock.
const SLACK: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn limits(header: u64, body: u64, idle: u64, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: ms(header),
        body_read_timeout: ms(body),
        idle_timeout: ms(idle),
        max_connections,
    }
}

/// The listener of `serve` on the example configuration, on a free loopback port.
async fn start(limits: Limits) -> (HttpHandle, tempfile::TempDir) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../paybridge.example.toml");
    let prepared = startup::prepare(&config).expect("the example configuration loads");
    let dir = tempfile::tempdir().expect("tempdir");
    let app = serve::build_app(prepared, &dir.path().join("listener.db")).expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = serve::spawn_http_with(Arc::new(app), listener, limits).expect("spawn");
    (handle, dir)
}

async fn connect(h: &HttpHandle) -> TcpStream {
    TcpStream::connect(h.local_addr()).await.expect("connect")
}

fn webhook_body() -> String {
    serde_json::json!({
        "event": "payment.completed",
        "publicKey": PUBLIC_KEY,
        "retrieveUrl": "https://sbx-api.unzer.com/v1/payments/s-pay-listener-1",
        "paymentId": "s-pay-listener-1",
    })
    .to_string()
}

fn webhook_head(content_length: impl std::fmt::Display) -> String {
    format!(
        "POST /webhooks/memory HTTP/1.1\r\nHost: paybridge\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: paybridge\r\n\r\n";

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// `status` with the body `{"error": reason}`, announcing that the connection closes.
    fn assert_error_closing(&self, status: u16, reason: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json(), serde_json::json!({ "error": reason }));
        assert_eq!(self.header("connection"), Some("close"), "{self:?}");
    }
}

/// Reads one response (head and a `Content-Length` body).
async fn read_reply(r: &mut (impl AsyncRead + Unpin)) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = r.read(&mut chunk).await.expect("read a response");
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = r.read(&mut chunk).await.expect("read a response body");
        assert!(n > 0, "connection closed inside a response body");
        body.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Reads until the server closes (EOF or reset), at most `bound`, and returns how many bytes
/// arrived before; panics when the connection stays open.
async fn wait_closed(r: &mut (impl AsyncRead + Unpin), bound: Duration) -> usize {
    let mut bytes = 0;
    let mut chunk = [0u8; 1024];
    let until = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(until, r.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return bytes,
            Ok(Ok(n)) => bytes += n,
        }
    }
}

/// Asserts that the server closes the connection without sending anything, no earlier than
/// `limit` after `from` (less [`SLACK`]) and less than 3 s after it.
async fn closed_silently_after(
    r: &mut (impl AsyncRead + Unpin),
    from: Instant,
    limit: Duration,
    what: &str,
) {
    let bytes = wait_closed(r, Duration::from_secs(4)).await;
    let elapsed = from.elapsed();
    assert_eq!(bytes, 0, "closed without an answer");
    assert!(elapsed >= limit - SLACK, "not before {what}: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "soon after {what}: {elapsed:?}"
    );
}

/// Writes `text` one byte every `every`, until written or the server closes.
fn trickle(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    text: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in text.into_bytes() {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A request head that takes `bytes` × the trickle interval and never ends.
fn endless_head(bytes: usize) -> String {
    format!(
        "POST /webhooks/unzer HTTP/1.1\r\nHost: paybridge\r\nX-Slow: {}",
        "a".repeat(bytes)
    )
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_is_cut_off_after_the_header_timeout() {
    let (h, _dir) = start(limits(500, 5_000, 5_000, 64)).await;
    let started = Instant::now();
    let (mut r, w) = connect(&h).await.into_split();
    let writer = trickle(w, endless_head(1_000), ms(20));
    // Well before the idle or body timeouts (5 s).
    closed_silently_after(&mut r, started, ms(500), "the header timeout").await;
    assert_eq!(h.stats().header_timeouts(), 1);
    writer.abort();
    // The listener still serves.
    let mut s = connect(&h).await;
    s.write_all(HEALTH.as_bytes()).await.expect("write");
    assert_eq!(read_reply(&mut s).await.status, 200);
    h.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (h, _dir) = start(limits(5_000, 5_000, 500, 64)).await;
    let mut s = connect(&h).await;
    s.write_all(HEALTH.as_bytes()).await.expect("write");
    let reply = read_reply(&mut s).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
    // Kept alive: a second request within the idle timeout is served on the same connection,
    // and restarts the idle clock.
    tokio::time::sleep(ms(300)).await;
    s.write_all(HEALTH.as_bytes()).await.expect("write");
    assert_eq!(read_reply(&mut s).await.status, 200);
    let idle_from = Instant::now();
    // Well before the header timeout (5 s).
    closed_silently_after(&mut s, idle_from, ms(500), "the idle timeout").await;
    assert_eq!(h.stats().header_timeouts(), 0, "idle is not a slow head");
    h.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let (h, _dir) = start(limits(5_000, 500, 5_000, 64)).await;
    let body = webhook_body();
    let mut s = connect(&h).await;
    s.write_all(webhook_head(body.len()).as_bytes())
        .await
        .expect("write the head");
    s.write_all(&body.as_bytes()[..10])
        .await
        .expect("write part of the body");
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(4), read_reply(&mut s))
        .await
        .expect("answered before the other timeouts (5 s)");
    let elapsed = started.elapsed();
    reply.assert_error_closing(408, "request body not received in time");
    assert!(
        elapsed >= ms(500) - SLACK,
        "not before the body timeout: {elapsed:?}"
    );
    assert_eq!(wait_closed(&mut s, Duration::from_secs(2)).await, 0);
    assert_eq!(h.stats().body_timeouts(), 1);
    h.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_huge_content_length_is_refused_413_without_sending_the_body() {
    let (h, _dir) = start(limits(30_000, 30_000, 30_000, 64)).await;
    let mut s = connect(&h).await;
    let started = Instant::now();
    s.write_all(webhook_head("1000000000000000").as_bytes())
        .await
        .expect("write the head");
    let reply = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut s))
        .await
        .expect("answered at once, not after the 30 s body timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    reply.assert_error_closing(413, "body too large (limit 16384 bytes)");
    assert_eq!(
        wait_closed(&mut s, Duration::from_secs(5)).await,
        0,
        "the connection is not kept waiting for the body"
    );
    assert_eq!(h.stats().body_timeouts(), 0);
    h.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn at_the_connection_cap_slow_clients_are_evicted_and_new_ones_served() {
    const CAP: usize = 8;
    const SLOW: usize = 20;
    let (h, _dir) = start(limits(20_000, 20_000, 20_000, CAP)).await;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SLOW {
        let (mut r, w) = connect(&h).await.into_split();
        tasks.push(trickle(w, endless_head(10_000), ms(100)));
        let closed = Arc::clone(&closed);
        tasks.push(tokio::spawn(async move {
            let mut chunk = [0u8; 256];
            // No response ever comes to an endless head: only the close.
            while let Ok(n) = r.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }));
        tokio::time::sleep(ms(10)).await;
    }
    // Let the evictions land.
    tokio::time::sleep(ms(300)).await;
    let open = h.stats().open_connections();
    assert!(open <= CAP, "{open} connections open, cap {CAP}");
    assert!(
        closed.load(Ordering::SeqCst) >= SLOW - CAP,
        "the oldest slow connections were closed: {} of {SLOW}",
        closed.load(Ordering::SeqCst)
    );

    // New clients are served although the slow ones fill the cap.
    let mut s = connect(&h).await;
    s.write_all(HEALTH.as_bytes()).await.expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut s))
        .await
        .expect("/health answers at the cap");
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(s);

    let body = webhook_body();
    let mut s = connect(&h).await;
    s.write_all(format!("{}{body}", webhook_head(body.len())).as_bytes())
        .await
        .expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(5), read_reply(&mut s))
        .await
        .expect("the webhook answers at the cap");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), serde_json::json!({ "status": "accepted" }));
    drop(s);

    // One eviction per client beyond the cap: the slow ones past the eighth and the /health
    // probe (the webhook probe may find the slot the /health probe left).
    let evicted = h.stats().evicted();
    assert!(
        evicted > (SLOW - CAP) as u64,
        "one eviction per client beyond the cap: {evicted}"
    );
    assert_eq!(h.stats().header_timeouts(), 0, "closed by eviction only");
    h.shutdown().await.expect("shutdown");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn a_stop_closes_half_sent_requests_at_once_and_lets_requests_in_flight_finish() {
    let (h, _dir) = start(limits(30_000, 30_000, 30_000, 64)).await;
    // Five half-sent heads.
    let mut half_sent = Vec::new();
    for _ in 0..5 {
        let mut s = connect(&h).await;
        s.write_all(b"POST /webhooks/unzer HTTP/1.1\r\nHost: paybridge\r\n")
            .await
            .expect("write half a head");
        half_sent.push(s);
    }
    // One idle keep-alive.
    let mut idle = connect(&h).await;
    idle.write_all(HEALTH.as_bytes()).await.expect("write");
    assert_eq!(read_reply(&mut idle).await.status, 200);
    // One request in flight: head and part of its body.
    let body = webhook_body();
    let mut in_flight = connect(&h).await;
    in_flight
        .write_all(webhook_head(body.len()).as_bytes())
        .await
        .expect("write the head");
    in_flight
        .write_all(&body.as_bytes()[..10])
        .await
        .expect("write part of the body");
    tokio::time::sleep(ms(200)).await;
    assert_eq!(h.stats().open_connections(), 7);

    let started = Instant::now();
    let stop = tokio::spawn(h.shutdown());
    for s in half_sent.iter_mut() {
        assert_eq!(
            wait_closed(s, Duration::from_secs(2)).await,
            0,
            "a half-sent head is closed at once"
        );
    }
    assert_eq!(wait_closed(&mut idle, Duration::from_secs(2)).await, 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "connections without a request in flight closed at once: {:?}",
        started.elapsed()
    );
    assert!(!stop.is_finished(), "the request in flight holds the stop");
    // The rest of the body arrives: the request is answered, then the stop completes.
    in_flight
        .write_all(&body.as_bytes()[10..])
        .await
        .expect("write the rest of the body");
    let reply = read_reply(&mut in_flight).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), serde_json::json!({ "status": "accepted" }));
    tokio::time::timeout(Duration::from_secs(2), stop)
        .await
        .expect("the stop completes once the request is answered")
        .expect("the stop task")
        .expect("shutdown");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "the stop took {elapsed:?}; no 30 s timeout was waited for"
    );
    assert_eq!(wait_closed(&mut in_flight, Duration::from_secs(2)).await, 0);
}
