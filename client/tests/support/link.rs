//! A TCP proxy for tests that puts faults on a link: it can freeze (move
//! no bytes either way and close nothing), cut every connection through
//! it, and refuse new ones.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// The link's state, as each relay watches it.
#[derive(Clone, Copy, Default)]
struct State {
    frozen: bool,
    /// Bumped by [`FreezingLink::cut`]: relays of an earlier generation end.
    cuts: u64,
    /// New connections are closed at once.
    refusing: bool,
}

/// A TCP proxy in front of a target address.
pub struct FreezingLink {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
}

impl FreezingLink {
    pub async fn start(target: SocketAddr) -> FreezingLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (state, watching) = watch::channel(State::default());
        actix_rt::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let now = *watching.borrow();
                if now.refusing {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                actix_rt::spawn(relay(ri, wo, watching.clone(), now.cuts));
                actix_rt::spawn(relay(ro, wi, watching.clone(), now.cuts));
            }
        });
        FreezingLink { addr, state }
    }

    pub fn freeze(&self, on: bool) {
        self.state.send_modify(|s| s.frozen = on);
    }

    /// Closes every connection through the link.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cuts += 1);
    }

    /// Closes new connections at once (`true`) or relays them again.
    pub fn refuse(&self, on: bool) {
        self.state.send_modify(|s| s.refusing = on);
    }
}

/// Copies `from` to `to`, holding still while the link is frozen, until
/// either side closes or the link is cut.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let open = |s: &State| s.cuts == generation;
    loop {
        let thawed = state.wait_for(|s| !s.frozen || !open(s)).await;
        if thawed.map_or(true, |s| !open(&s)) {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => Some(read),
            _ = state.wait_for(|s| s.frozen || !open(s)) => None,
        };
        let n = match read {
            None => continue,
            Some(Ok(0) | Err(_)) => return,
            Some(Ok(n)) => n,
        };
        // Bytes read just as the link froze wait for the thaw.
        let thawed = state.wait_for(|s| !s.frozen || !open(s)).await;
        if thawed.map_or(true, |s| !open(&s)) || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
