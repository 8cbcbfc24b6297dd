//! A connection's bytes as both ends carry them: plain, or TLS over the
//! plain stream. The server's callers and the client's local services both
//! come one way or the other, and every read and write goes to whichever
//! it is.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that is `P` (plain), or `T` (TLS over a `P`, its handshake
/// done).
#[derive(Debug)]
pub enum Wire<P, T> {
    /// Plain bytes.
    Plain(P),
    /// TLS.
    Tls(Box<T>),
}

/// Each call goes to the stream underneath.
macro_rules! on_wire {
    ($wire:expr, $s:ident => $call:expr) => {
        match $wire {
            Wire::Plain($s) => $call,
            Wire::Tls($s) => $call,
        }
    };
}

impl<P, T> AsyncRead for Wire<P, T>
where
    P: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_wire!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<P, T> AsyncWrite for Wire<P, T>
where
    P: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_wire!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_wire!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_wire!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_wire!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_wire!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
