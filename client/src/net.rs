//! HTTP clients with the socket options the tunnel wants.

use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_service::{Service, ServiceExt};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, Resolver};
use awc::http::Uri;

/// A TCP connector that turns Nagle's algorithm off on every connection:
/// frames and small responses leave at once instead of waiting for ACKs.
fn nodelay_tcp(
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError> + Clone
{
    Connector::new(Resolver::default())
        .service()
        .map(set_nodelay as fn(Connection<Uri, TcpStream>) -> Connection<Uri, TcpStream>)
}

fn set_nodelay(conn: Connection<Uri, TcpStream>) -> Connection<Uri, TcpStream> {
    let _ = conn.io_ref().set_nodelay(true);
    conn
}

/// An HTTP/1.1 client: pooled keep-alive connections with `TCP_NODELAY`, no
/// redirects followed, no headers of its own added, no decompression, and a
/// connect timeout of `connect_timeout`. Response-head timeouts are set per
/// request.
pub fn http_client(connect_timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(nodelay_tcp())
        .timeout(connect_timeout)
        .limit(1024)
        .max_http_version(awc::http::Version::HTTP_11);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        .disable_timeout()
        .finish()
}
