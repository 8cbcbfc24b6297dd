//! The public listeners: what the server accepts callers and clients on.
//! Each listener is bound before the server starts (so tests bind port 0
//! and the binary binds what the configuration says), and says how callers
//! reach it: plain HTTP, HTTPS, or plain HTTP that sends callers to HTTPS.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    sync::Arc,
};

use tokio_rustls::TlsAcceptor;

use crate::tls::LiveCertificates;

/// Connections the kernel completes and holds until the server accepts them
/// (the kernel caps it at `net.core.somaxconn`, 4096 by default). The same
/// as actix-web's own default when it binds. `TcpListener::bind` asks for
/// 128: a burst beyond that, such as thousands of clients reconnecting
/// after a restart or many callers opening connections at once, has its
/// connection attempts dropped, and each dropped one waits a second for its
/// retry.
pub const BACKLOG: i32 = 1024;

/// How callers speak to a listener.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP/1.1 over TCP.
    Plain,
    /// HTTP/1.1 over TLS.
    Tls {
        /// The handshake, with its certificates.
        acceptor: TlsAcceptor,
        /// The certificates it presents that ACME fills while it runs.
        live: Arc<LiveCertificates>,
    },
    /// Plain HTTP whose every request is sent to the same URL over HTTPS,
    /// on `https_port`.
    Redirect {
        /// The HTTPS listener's port.
        https_port: u16,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain => f.write_str("Plain"),
            Transport::Tls { .. } => f.write_str("Tls"),
            Transport::Redirect { https_port } => write!(f, "Redirect to port {https_port}"),
        }
    }
}

impl Transport {
    /// The scheme callers use (`X-Forwarded-Proto`).
    pub fn proto(&self) -> &'static str {
        match self {
            Transport::Plain | Transport::Redirect { .. } => "http",
            Transport::Tls { .. } => "https",
        }
    }
}

/// A bound public listener.
#[derive(Debug)]
pub struct PublicListener {
    /// The socket, already listening.
    pub tcp: TcpListener,
    /// How callers speak to it.
    pub transport: Transport,
}

impl PublicListener {
    /// A plain HTTP listener on an already bound socket.
    pub fn plain(tcp: TcpListener) -> Self {
        PublicListener {
            tcp,
            transport: Transport::Plain,
        }
    }

    /// An HTTPS listener on an already bound socket.
    pub fn tls(tcp: TcpListener, settings: &crate::config::TlsSettings) -> io::Result<Self> {
        let live = Arc::new(LiveCertificates::default());
        Ok(PublicListener {
            tcp,
            transport: Transport::Tls {
                acceptor: crate::tls::acceptor(settings, live.clone())?,
                live,
            },
        })
    }

    /// A listener on an already bound socket that sends every caller to
    /// HTTPS on `https_port`.
    pub fn redirect(tcp: TcpListener, https_port: u16) -> Self {
        PublicListener {
            tcp,
            transport: Transport::Redirect { https_port },
        }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Binds the public listeners the configuration asks for: `listen` (HTTPS
/// when `[tls]` is set) and `http_listen`. An error names the address.
pub fn bind(config: &crate::ServerConfig) -> io::Result<Vec<PublicListener>> {
    let bound = |addr: SocketAddr| {
        TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let main = bound(config.listen)?;
    let Some(tls) = &config.tls else {
        return Ok(vec![PublicListener::plain(main)]);
    };
    let https_port = main.local_addr()?.port();
    let mut listeners = vec![PublicListener::tls(main, tls)?];
    if let Some(addr) = config.http_listen {
        listeners.push(PublicListener::redirect(bound(addr)?, https_port));
    }
    Ok(listeners)
}

/// Sets the queue of `listener`, already listening, to [`BACKLOG`].
pub fn widen_backlog(listener: &TcpListener) -> io::Result<()> {
    socket2::SockRef::from(listener).listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::{net::TcpStream, time::Duration};

    use super::*;

    #[test]
    fn a_burst_of_connections_waits_in_the_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        widen_backlog(&listener).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts, so every connection must fit in the queue. With
        // the 128 that `bind` asks for, the kernel drops the attempts after
        // the 129th, and their retries find the queue still full.
        let connections: Vec<TcpStream> = (0..300)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} was not queued: {e}"))
            })
            .collect();
        assert_eq!(connections.len(), 300);
    }
}
