//! A TCP listener whose connections a handler can cut: the simulator's "processed, then the
//! connection dropped" fault. Each accepted stream shares a kill flag with the connection info
//! the handler sees; once set, the stream fails every read and write, so hyper abandons the
//! reply and closes the socket — the client sees a connection closed after sending.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub struct SimListener {
    inner: TcpListener,
}

impl SimListener {
    pub fn new(inner: TcpListener) -> SimListener {
        SimListener { inner }
    }
}

/// Per-connection info handed to handlers: the connection's kill switch.
#[derive(Debug, Clone)]
pub struct ConnTag {
    kill: Arc<AtomicBool>,
}

impl ConnTag {
    /// Cuts the connection: the reply being written is lost.
    pub fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

pub struct SimStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "unzer simulator dropped the connection",
    )
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (SimStream, ConnTag) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _peer)) => {
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        SimStream {
                            inner: stream,
                            kill: kill.clone(),
                        },
                        ConnTag { kill },
                    );
                }
                // e.g. too many open files: back off and keep serving
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnTag> {
        self.inner.local_addr()?;
        Ok(ConnTag {
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}
