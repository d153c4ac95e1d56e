//! Lingering close for the server's TCP connections.
//!
//! A client that sends a request body without waiting for `100 Continue`
//! (reqwest and most SDKs never wait; curl waits only on large bodies) is still writing
//! when the server has already answered: 413 at the body limit, 401 before
//! the body is read at all. The server then closes the connection with the
//! rest of the body unread, and a socket closed with unread data answers
//! with a reset. The client's next write fails (`EPIPE`) and its HTTP stack
//! reports that error instead of the answer that is already on its way, or
//! the reset throws the unread answer away.
//!
//! [`Lingering`] does what nginx's `lingering_close` does: when the
//! connection is dropped, a task shuts our side down (the client sees the
//! answer end) and reads and discards what the client still sends, until it
//! closes, [`LINGER_BYTES`] have been read or [`LINGER_TIME`] has passed.
//! A connection the client closed first costs one read that returns 0.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest a closed connection is drained.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// Most bytes drained from a closed connection; past this the client gets
/// the reset (it sent far more than any request the server accepts).
pub const LINGER_BYTES: usize = 64 << 20;

/// A TCP stream that drains before it closes (see the module docs).
pub struct Lingering {
    /// Always present until dropped.
    io: Option<TcpStream>,
}

impl Lingering {
    /// Wraps an accepted connection.
    pub fn new(io: TcpStream) -> Self {
        Self { io: Some(io) }
    }

    fn io(&mut self) -> std::io::Result<Pin<&mut TcpStream>> {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        // outside a runtime (nothing to drain with) the socket just closes
        if let Some(io) = self.io.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(drain(io));
        }
    }
}

/// Shuts our side down, then reads until the client closes or a bound is hit.
async fn drain(mut io: TcpStream) {
    // hyper has usually shut down already; a second shutdown is harmless
    let _ = io.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 16 << 10];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            // closed by the client, an error, or out of time
            _ => break,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl tonic::transport::server::Connected for Lingering {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.io.as_ref().and_then(|io| io.local_addr().ok()),
            remote_addr: self.io.as_ref().and_then(|io| io.peer_addr().ok()),
        }
    }
}

/// Accepts connections on `listener`, each [`Lingering`]. A failed accept
/// (out of descriptors and the like) is logged and retried after a pause.
pub async fn accept(listener: &TcpListener) -> (Lingering, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((io, peer)) => return (Lingering::new(io), peer),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The address a request came from (`ConnectInfo<Peer>`), for limits per
/// source (webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LingeringListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, LingeringListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A plain-TCP listener for `axum::serve` whose connections linger.
pub struct LingeringListener(pub TcpListener);

impl axum::serve::Listener for LingeringListener {
    type Io = Lingering;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        accept(&self.0).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
