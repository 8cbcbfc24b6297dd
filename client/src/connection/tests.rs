use std::time::Duration;

use burrow_common::{flow::PathState, outbox::SOCKET_UNSENT};
use tokio::io::AsyncReadExt;

use super::TunnelSocket;
use crate::{local_io::LocalIo, local_tls::LocalStream};

/// A path measured at `ms` a round trip.
fn path(ms: u64) -> PathState {
    let path = PathState::new();
    path.sample(Duration::from_millis(ms));
    path
}

#[actix_rt::test]
async fn the_tunnel_socket_is_bounded_on_a_long_path_only_and_held_by_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let near = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (near, far) = tokio::join!(near, listener.accept());
    let (near, mut far) = (near.unwrap(), far.unwrap().0);
    // The same socket, to read its setting back.
    let probe = socket2::SockRef::from(&near).try_clone().unwrap();
    let io = LocalIo::new(LocalStream::Plain(near));
    let mut socket = TunnelSocket::new(io.socket());
    socket.fit(&path(1));
    assert_eq!(probe.tcp_notsent_lowat().unwrap(), 0, "short: the default");
    socket.fit(&path(40));
    assert_eq!(probe.tcp_notsent_lowat().unwrap(), SOCKET_UNSENT);
    // Once the connection is gone, the handle keeps nothing open.
    drop((io, probe));
    socket.fit(&path(40));
    let mut buf = [0; 8];
    let end = tokio::time::timeout(Duration::from_secs(10), far.read(&mut buf));
    assert_eq!(end.await.expect("closed").unwrap(), 0);
}
