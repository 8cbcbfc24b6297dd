//! The link between the client and the server: a TCP proxy on its own
//! thread that can freeze, moving no byte in either direction and closing
//! nothing (a laptop asleep, a NAT that forgot the flow), then thaw.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use crate::Res;

/// Whether the link is frozen, and who waits for it to thaw.
#[derive(Default)]
struct Gate {
    frozen: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Gate {
    /// Ready when open; when frozen, `cx` is woken at the thaw.
    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock that `set` takes, so no thaw is missed.
        if !self.frozen.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn set(&self, frozen: bool) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        self.frozen.store(frozen, Ordering::SeqCst);
        if !frozen {
            waiting.drain(..).for_each(Waker::wake);
        }
    }
}

/// A socket that neither reads nor writes while its gate is frozen: bytes
/// wait in the kernel's buffers, as they would on a dead path.
struct Gated {
    socket: TcpStream,
    gate: Arc<Gate>,
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.socket).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.gate.poll_open(cx));
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// The proxy: clients connect to `addr`, each connection is relayed to the
/// server's listener.
pub struct Link {
    pub addr: SocketAddr,
    gate: Arc<Gate>,
}

impl Link {
    pub fn start(target: SocketAddr) -> Res<Link> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let gate = Arc::new(Gate::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let relay_gate = gate.clone();
        // Its own thread: the callers' checks on the main thread never
        // delay the tunnel's bytes (a delay there could look like a freeze).
        std::thread::spawn(move || runtime.block_on(accept(listener, target, relay_gate)));
        Ok(Link { addr, gate })
    }

    pub fn freeze(&self) {
        self.gate.set(true);
    }

    pub fn thaw(&self) {
        self.gate.set(false);
    }
}

async fn accept(listener: std::net::TcpListener, target: SocketAddr, gate: Arc<Gate>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((inbound, _)) = listener.accept().await {
        let gate = gate.clone();
        tokio::spawn(async move {
            // While the server is down (restarting), the client's attempt is
            // closed at once, as a refused connection would be.
            let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target));
            let Ok(Ok(outbound)) = connect.await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let mut a = Gated {
                socket: inbound,
                gate: gate.clone(),
            };
            let mut b = Gated {
                socket: outbound,
                gate,
            };
            // Ends when both sides have closed; a close is passed on as a
            // shutdown of the other side's writing half.
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
    }
}
