//! The table's columns: direct access, or a tunnel (burrow, bore, rathole)
//! in front of the upstream.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use burrow_common::http1::ChunkedDecoder;

use crate::{
    link::{Link, Shape},
    procs::{cpu_ticks, free_port, proc_status, spawn_logged, wait_port, which, write, Proc},
    Res, HOST, SMALL,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Burrow,
    /// burrow with HTTPS on the public listener and wss:// to the server.
    BurrowTls,
    Bore,
    Rathole,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Burrow => "burrow",
            Kind::BurrowTls => "burrow https",
            Kind::Bore => "bore",
            Kind::Rathole => "rathole",
        }
    }
}

/// A running tunnel (or none, for direct access) in front of the upstream.
pub struct Tunnel {
    pub kind: Kind,
    pub addr: SocketAddr,
    procs: Vec<Proc>,
    /// The long link between its two ends (between caller and upstream
    /// for direct access), when there is one.
    _link: Option<Link>,
}

impl Tunnel {
    pub fn start(kind: Kind, bin: &Path, work: &Path, upstream: SocketAddr) -> Res<Tunnel> {
        Tunnel::start_over(kind, bin, work, upstream, None)
    }

    /// A tunnel whose ends talk over a link of `shape`.
    pub fn start_over(
        kind: Kind,
        bin: &Path,
        work: &Path,
        upstream: SocketAddr,
        shape: Option<Shape>,
    ) -> Res<Tunnel> {
        let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        // Each tunnel's client reaches its server at `via`; the link, when
        // there is one, listens there and relays to the server's `to`.
        let link = |via: SocketAddr, to: SocketAddr| -> Res<Option<Link>> {
            shape.map(|s| Link::start(via, to, s)).transpose()
        };
        let (procs, link) = match kind {
            Kind::Direct => {
                let link = link(any, upstream)?;
                let addr = link.as_ref().map_or(upstream, |l| l.addr);
                return Ok(Tunnel {
                    kind,
                    addr,
                    procs: Vec::new(),
                    _link: link,
                });
            }
            Kind::Burrow | Kind::BurrowTls => {
                let link = link(any, public)?;
                let via = link.as_ref().map_or(public, |l| l.addr);
                let tls = kind == Kind::BurrowTls;
                (start_burrow(bin, work, public, via, upstream, tls)?, link)
            }
            Kind::Bore => {
                // bore's control port is fixed: its server listens on a
                // second loopback address, the link on the usual one.
                let (control, bind) = if shape.is_some() {
                    ([127, 0, 0, 2], "127.0.0.2")
                } else {
                    ([127, 0, 0, 1], "127.0.0.1")
                };
                let procs = start_bore(work, bind, public, upstream)?;
                let link = link(([127, 0, 0, 1], 7835).into(), (control, 7835).into())?;
                (procs, link)
            }
            Kind::Rathole => {
                let control: SocketAddr = ([127, 0, 0, 1], free_port()).into();
                let link = link(any, control)?;
                let via = link.as_ref().map_or(control, |l| l.addr);
                (start_rathole(work, control, via, public, upstream)?, link)
            }
        };
        Tunnel {
            kind,
            addr: public,
            procs,
            _link: link,
        }
        .ready()
    }

    /// Ready when a request goes all the way through.
    fn ready(self) -> Res<Tunnel> {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let got = http_get(self.addr, self.host(), self.tls(), "/small");
            if matches!(got, Ok((200, body)) if body == SMALL) {
                return Ok(self);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{} did not come up", self.kind.name()))
    }

    pub fn host(&self) -> Option<&'static str> {
        matches!(self.kind, Kind::Burrow | Kind::BurrowTls).then_some(HOST)
    }

    /// Whether callers speak TLS to it.
    pub fn tls(&self) -> bool {
        self.kind == Kind::BurrowTls
    }

    /// The scheme callers use.
    pub fn scheme(&self) -> &'static str {
        if self.tls() {
            "https"
        } else {
            "http"
        }
    }

    /// Every answer is checked before anything is timed.
    pub fn check(&self) -> Res<()> {
        let (status, body) = http_get(self.addr, self.host(), self.tls(), "/small")?;
        if status != 200 || body != SMALL {
            return Err(format!(
                "{}: wrong answer to /small: {status} {body:?}",
                self.kind.name()
            ));
        }
        Ok(())
    }

    /// The server's and the client's process ids.
    pub fn pids(&self) -> Option<(u32, u32)> {
        match self.procs.as_slice() {
            [server, client] => Some((server.id(), client.id())),
            _ => None,
        }
    }

    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let (s, c) = self.pids()?;
        Some((proc_status(s, "VmRSS:")?, proc_status(c, "VmRSS:")?))
    }

    pub fn peak_kib(&self) -> Option<(u64, u64)> {
        let (s, c) = self.pids()?;
        Some((proc_status(s, "VmHWM:")?, proc_status(c, "VmHWM:")?))
    }

    /// CPU ticks of the server and of the client.
    pub fn cpu_ticks(&self) -> Option<(u64, u64)> {
        let (s, c) = self.pids()?;
        Some((cpu_ticks(s)?, cpu_ticks(c)?))
    }
}

/// burrow's two ends; the client dials its server at `via`.
fn start_burrow(
    bin: &Path,
    work: &Path,
    public: SocketAddr,
    via: SocketAddr,
    upstream: SocketAddr,
    tls: bool,
) -> Res<Vec<Proc>> {
    let (server_tls, scheme, ca) = if tls {
        let f = crate::tls::files(work)?;
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                abs(&f.cert)?,
                abs(&f.key)?
            ),
            "wss",
            format!("ca = \"{}\"\n", abs(&f.ca)?),
        )
    } else {
        (String::new(), "ws", String::new())
    };
    let server = work.join("burrow-server.toml");
    write(
        &server,
        &format!(
            "listen = \"{public}\"\n[[hosts]]\nhost = \"{HOST}\"\ntoken = \"bench-token\"\n\
             {server_tls}"
        ),
    )?;
    let client = work.join("burrow.toml");
    write(
        &client,
        &format!(
            "server = \"{scheme}://{via}/_burrow/connect\"\n{ca}[[tunnels]]\nhost = \"{HOST}\"\n\
             token = \"bench-token\"\nlocal = \"http://{upstream}\"\n"
        ),
    )?;
    let mut procs = vec![spawn_logged(
        Command::new(bin.join("burrow-server"))
            .arg("--config")
            .arg(&server),
        &work.join("burrow-server.log"),
    )?];
    wait_port(public)?;
    procs.push(spawn_logged(
        Command::new(bin.join("burrow"))
            .arg("--config")
            .arg(&client),
        &work.join("burrow.log"),
    )?);
    Ok(procs)
}

/// bore's two ends; its server's control port listens on `bind`.
fn start_bore(work: &Path, bind: &str, public: SocketAddr, upstream: SocketAddr) -> Res<Vec<Proc>> {
    let bore = which("bore").ok_or("bore vanished")?;
    let mut procs = vec![spawn_logged(
        Command::new(&bore).args(["server", "--bind-addr", bind, "--bind-tunnels", "127.0.0.1"]),
        &work.join("bore-server.log"),
    )?];
    let control: std::net::IpAddr = bind.parse().map_err(|e| format!("{bind}: {e}"))?;
    wait_port((control, 7835).into())?;
    procs.push(spawn_logged(
        Command::new(&bore).args([
            "local",
            &upstream.port().to_string(),
            "--local-host",
            "127.0.0.1",
            "--to",
            "127.0.0.1",
            "--port",
            &public.port().to_string(),
        ]),
        &work.join("bore.log"),
    )?);
    Ok(procs)
}

/// rathole's two ends; its client dials the server's `control` port at
/// `via`.
fn start_rathole(
    work: &Path,
    control: SocketAddr,
    via: SocketAddr,
    public: SocketAddr,
    upstream: SocketAddr,
) -> Res<Vec<Proc>> {
    let rathole = which("rathole").ok_or("rathole vanished")?;
    let server = work.join("rathole-server.toml");
    write(
        &server,
        &format!(
            "[server]\nbind_addr = \"{control}\"\n[server.services.bench]\n\
             token = \"bench-token\"\nbind_addr = \"{public}\"\nnodelay = true\n"
        ),
    )?;
    let client = work.join("rathole-client.toml");
    write(
        &client,
        &format!(
            "[client]\nremote_addr = \"{via}\"\n[client.services.bench]\n\
             token = \"bench-token\"\nlocal_addr = \"{upstream}\"\nnodelay = true\n"
        ),
    )?;
    let mut procs = vec![spawn_logged(
        Command::new(&rathole).arg("--server").arg(&server),
        &work.join("rathole-server.log"),
    )?];
    wait_port(control)?;
    procs.push(spawn_logged(
        Command::new(&rathole).arg("--client").arg(&client),
        &work.join("rathole.log"),
    )?);
    Ok(procs)
}

/// An absolute path, as a configuration file elsewhere names it.
fn abs(path: &Path) -> Res<String> {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A GET over a fresh connection; returns status and body.
pub fn http_get(
    addr: SocketAddr,
    host: Option<&str>,
    tls: bool,
    path: &str,
) -> Res<(u16, Vec<u8>)> {
    let mut s = crate::tls::connect(addr, tls)?;
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?
        + 4;
    let status = out
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or("bad status")?;
    let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
    let mut body = out[head_end..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = ChunkedDecoder::decode_all(&body).map_err(|e| e.to_string())?;
    }
    Ok((status, body))
}
