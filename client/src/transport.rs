//! How the client opens connections: one connector, TCP with
//! `TCP_NODELAY` and a connect timeout, used by the control WebSocket, by
//! the pooled HTTP client for local services and by WebSocket upgrades to
//! local services. The control WebSocket adds TLS for `wss://` servers,
//! and hands out its socket, which the connection bounds on a long path.

use std::{cell::RefCell, collections::HashMap, io, rc::Rc, sync::Arc, time::Duration};

use actix_rt::net::TcpStream;
use actix_service::{Service, ServiceExt};
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, Resolve, Resolver,
};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;

use crate::{
    local_io::{LocalIo, SocketHandle},
    local_tls::{LocalStream, LocalTls},
};

/// Longest wait for a TCP connection, to the server or a local service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the client's connections.
#[derive(Debug, Clone)]
pub struct Connector {
    timeout: Duration,
    /// The local services reached over TLS, by `host:port`.
    tls: Arc<HashMap<String, LocalTls>>,
}

impl Default for Connector {
    fn default() -> Self {
        Connector {
            timeout: CONNECT_TIMEOUT,
            tls: Arc::default(),
        }
    }
}

/// How the client finds the addresses of a host name: `localhost` and
/// every name under `.localhost` are this machine (RFC 6761), as curl and
/// browsers take them, whether or not the system's resolver knows them;
/// other names are asked of the system's resolver (on a blocking thread,
/// as its call blocks).
struct Names;

impl Resolve for Names {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            if let Some(addrs) = loopback_name(host, port) {
                return Ok(addrs);
            }
            let name = (host.to_owned(), port);
            let found = tokio::task::spawn_blocking(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&name).map(Iterator::collect)
            });
            Ok(found.await??)
        })
    }
}

/// The addresses of a name under `.localhost`: IPv4's loopback first (what
/// most development servers listen on), then IPv6's.
fn loopback_name(host: &str, port: u16) -> Option<Vec<std::net::SocketAddr>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (host == "localhost" || host.ends_with(".localhost")).then(|| {
        vec![
            (std::net::Ipv4Addr::LOCALHOST, port).into(),
            (std::net::Ipv6Addr::LOCALHOST, port).into(),
        ]
    })
}

fn set_nodelay(conn: Connection<Uri, TcpStream>) -> Connection<Uri, TcpStream> {
    let _ = conn.io_ref().set_nodelay(true);
    conn
}

impl Connector {
    /// A connector that reaches the local services in `tls` (by
    /// `host:port`) over TLS.
    pub fn with_tls(tls: HashMap<String, LocalTls>) -> Self {
        Connector {
            tls: Arc::new(tls),
            ..Connector::default()
        }
    }

    /// `tcp` as a stream to the local service at `authority`: TLS over it
    /// when that service speaks HTTPS.
    async fn local_stream(&self, authority: &str, tcp: TcpStream) -> io::Result<LocalStream> {
        match self.tls.get(authority) {
            None => Ok(LocalStream::Plain(tcp)),
            Some(tls) => tls.connect(tcp).await,
        }
    }

    /// The TCP connector service: frames and small responses leave at once
    /// instead of waiting for ACKs (Nagle's algorithm off).
    fn tcp(
        &self,
    ) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError>
           + Clone {
        TcpConnector::new(Resolver::custom(Names))
            .service()
            .map(set_nodelay as fn(Connection<Uri, TcpStream>) -> Connection<Uri, TcpStream>)
    }

    /// A connection to the origin of `url` (its host and port), over TLS
    /// for a local service that speaks HTTPS.
    pub async fn connect(&self, url: &Uri) -> io::Result<LocalStream> {
        let authority = url.authority().map_or("", |a| a.as_str());
        let connecting = async {
            let conn = self.tcp().call(ConnectInfo::new(url.clone())).await;
            let tcp = conn
                .map_err(|e| io::Error::other(e.to_string()))?
                .into_parts()
                .0;
            self.local_stream(authority, tcp).await
        };
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// The HTTP client that opens the control WebSocket, over TLS with
    /// `tls` when it is given, and where its socket will be once it opens
    /// (for the connection to bound what it holds unsent on a long path).
    pub fn control_client(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> (awc::Client, Rc<RefCell<SocketHandle>>) {
        let socket = Rc::default();
        (self.client(tls, Some(Rc::clone(&socket))), socket)
    }

    /// An HTTP/1.1 client over this connector: pooled keep-alive
    /// connections, no redirects followed, no headers of its own added, no
    /// decompression. Response-head timeouts are set per request.
    pub fn http_client(&self) -> awc::Client {
        self.client(None, None)
    }

    /// The HTTP/1.1 client both are: connections through [`LocalIo`] (which
    /// changes nothing outside a forwarded exchange), with TLS to the
    /// server when `server_tls` is given; the last connection's socket
    /// goes to `socket` when it is given.
    fn client(
        &self,
        server_tls: Option<Arc<rustls::ClientConfig>>,
        socket: Option<Rc<RefCell<SocketHandle>>>,
    ) -> awc::Client {
        let this = self.clone();
        let local = actix_service::fn_service(move |conn: Connection<Uri, TcpStream>| {
            let (this, socket) = (this.clone(), socket.clone());
            async move {
                let (tcp, req) = conn.into_parts();
                let authority = req.authority().map_or("", |a| a.as_str()).to_owned();
                let stream = this.local_stream(&authority, tcp).await;
                let stream = stream.map_err(ConnectError::Io)?;
                let io = LocalIo::new(stream);
                if let Some(socket) = socket {
                    *socket.borrow_mut() = io.socket();
                }
                Ok(Connection::new(req, io))
            }
        });
        let mut connector = awc::Connector::new()
            .connector(self.tcp().and_then(local))
            .timeout(self.timeout)
            .handshake_timeout(self.timeout)
            .limit(1024)
            .max_http_version(awc::http::Version::HTTP_11);
        if let Some(tls) = server_tls {
            connector = connector.rustls_0_23(tls);
        }
        awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .no_default_headers()
            .disable_timeout()
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_localhost_are_this_machine() {
        for name in [
            "localhost",
            "app.localhost",
            "A.B.LOCALHOST",
            "x.localhost.",
        ] {
            let addrs = loopback_name(name, 3000).expect(name);
            assert!(addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 3000));
        }
        for name in ["localhost.example.com", "notlocalhost", "example.com"] {
            assert!(loopback_name(name, 80).is_none(), "{name}");
        }
    }
}
