//! The request inspector: a page and a JSON API, served by the client on
//! `127.0.0.1:4040`, that show every exchange as it passes (headers,
//! bodies, timings, a WebSocket's messages), send one again as it was or
//! edited and show what changed in the answer, and export as curl or HAR.
//!
//! It is a subscriber of the event hub ([`store::Keeper`]): the forwarding
//! path records exchanges only while a subscriber asks, and hands each over
//! as it ends; the inspector keeps the newest within [`Limits`]. Replays go
//! through the same local leg as forwarding ([`crate::local`]).

pub mod api;
pub mod capture;
pub mod diff;
pub mod export;
pub mod replay;
pub mod store;

use std::net::{SocketAddr, TcpListener};

use serde_json::Value;

pub use crate::config::inspect::{Limits, Settings};

use crate::{config::ClientConfig, observe::hub::Subscriber};
use capture::SavedRequest;
use store::Record;

/// The inspector, bound and with its store, before its server runs.
pub struct Inspector {
    listener: TcpListener,
    addr: SocketAddr,
    store: store::Shared,
}

impl Inspector {
    /// The inspector `settings` ask for, its address bound; `None` when
    /// it is off. `config` names each host's local service.
    pub fn bind(settings: &Settings, config: &ClientConfig) -> Result<Option<Inspector>, String> {
        let Some(listener) = bind(settings)? else {
            return Ok(None);
        };
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let config = config.clone();
        let locals = move |host: &str| {
            config
                .tunnel_for(host)
                .map(|t| t.local.clone())
                .unwrap_or_default()
        };
        Ok(Some(Inspector {
            listener,
            addr,
            store: store::Shared::new(settings.limits, locals),
        }))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its page's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What keeps the exchanges: a subscriber for the event hub.
    pub fn subscriber(&self) -> Box<dyn Subscriber> {
        Box::new(store::Keeper(self.store.clone()))
    }

    /// Starts its server on the running actix system; replays go to the
    /// services of `config`.
    pub fn start(self, config: ClientConfig) -> std::io::Result<actix_web::dev::ServerHandle> {
        let server = api::server(self.listener, self.store, config)?;
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(handle)
    }
}

/// The request of a kept record.
pub fn saved_of(r: &Record) -> SavedRequest {
    let e = &r.exchange;
    SavedRequest {
        method: e.method.clone(),
        path: e.uri.clone(),
        host: Some(e.host.clone()),
        local: Some(r.local.to_string()),
        headers: e.request_headers.to_list(),
        body: e.request_body.bytes.clone().into(),
        missing: e.request_body.total - e.request_body.bytes.len() as u64,
    }
}

/// `saved` with `edits` (`{method, path, headers, body}`, each optional)
/// made; the error says which edit is wrong.
pub fn edited(mut saved: SavedRequest, edits: &Value) -> Result<SavedRequest, String> {
    if edits.is_null() {
        return Ok(saved);
    }
    if !edits.is_object() {
        return Err("the edits must be a JSON object: {method, path, headers, body}".into());
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match edits.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    };
    if let Some(method) = text("method")? {
        saved.method = method;
    }
    if let Some(path) = text("path")? {
        saved.path = path;
    }
    if let Some(headers) = edits.get("headers").filter(|h| !h.is_null()) {
        saved.headers = capture::parse_fields(headers)?;
    }
    if let Some(body) = edits.get("body").filter(|b| !b.is_null()) {
        saved.body = capture::parse_body(body)?.0;
        saved.missing = 0;
    }
    Ok(saved)
}

/// Binds the inspector's address: the one given, or the default and, when
/// it is taken, the next free of [`crate::config::inspect::NEXT_PORTS`]
/// ports after it, then any free port.
pub fn bind(settings: &Settings) -> Result<Option<TcpListener>, String> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    if settings.given {
        return TcpListener::bind(addr).map(Some).map_err(|e| {
            format!("the inspector cannot listen on {addr}: {e}; give another address with --inspect ADDR, or --inspect off")
        });
    }
    let next = (0..=crate::config::inspect::NEXT_PORTS)
        .map(|i| addr.port().saturating_add(i))
        .chain([0]);
    let mut last = None;
    for port in next {
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(listener) => return Ok(Some(listener)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    Err(format!(
        "the inspector cannot listen on {}: {e}; give an address with --inspect ADDR",
        addr.ip()
    ))
}
