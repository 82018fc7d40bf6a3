//! The Paygate simulator's listener: every accepted TCP stream carries a "cut" switch that the
//! request handler receives as connection info. Once a handler throws it, the stream fails all
//! further reads and writes, so the reply in flight is lost and the client sees the connection
//! closed after its request was processed (the `DropAfter` fault).

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

/// A TCP listener whose connections can be cut by the handler.
pub struct CutListener(pub TcpListener);

/// The handler's handle on its connection.
#[derive(Debug, Clone, Default)]
pub struct Cut(Arc<AtomicBool>);

impl Cut {
    /// Loses the reply being written and closes the connection.
    pub fn now(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn thrown(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct CutStream {
    tcp: TcpStream,
    cut: Cut,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "paygate simulator cut the connection",
    )
}

impl AsyncRead for CutStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.cut.thrown() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut me.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.cut.thrown() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut me.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.cut.thrown() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut me.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl Listener for CutListener {
    type Io = CutStream;
    type Addr = Cut;

    async fn accept(&mut self) -> (CutStream, Cut) {
        loop {
            match self.0.accept().await {
                Ok((tcp, _)) => {
                    let cut = Cut::default();
                    return (
                        CutStream {
                            tcp,
                            cut: cut.clone(),
                        },
                        cut,
                    );
                }
                // e.g. out of file descriptors: wait a little and keep serving
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Cut> {
        self.0.local_addr().map(|_| Cut::default())
    }
}

impl Connected<IncomingStream<'_, CutListener>> for Cut {
    fn connect_info(stream: IncomingStream<'_, CutListener>) -> Self {
        stream.remote_addr().clone()
    }
}
