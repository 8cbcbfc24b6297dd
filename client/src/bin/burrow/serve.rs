//! Running the client from the command line: its identity kept across
//! restarts, its request log, the public URLs told as the tunnels come up,
//! and its end.

use std::{io::Write, sync::Arc};

use burrow_client::{
    identity::Identity,
    inspect::Inspector,
    observe::{
        hub::{Hub, Subscriber},
        ExchangeObserver,
    },
    request_log::RequestLog,
    ClientConfig, ClientEvent, Options,
};
use tokio::sync::{mpsc::UnboundedReceiver, Notify};

use crate::screen::{state::Shared, Screen};

/// How the tunnels' coming up is told.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// In the log only.
    Log,
    /// Also as `Forwarding URL -> LOCAL` lines on stdout, for quick mode.
    Stdout,
}

/// Serves `config` until a refusal or a signal ends the client, drawing
/// `screen` when given.
pub fn serve(
    config: ClientConfig,
    tell: Tell,
    stop_if_unreachable: bool,
    screen: Option<Shared>,
) -> anyhow::Result<()> {
    let identity = Identity::kept_for(&config);
    let inspector = inspector(&config)?;
    let inspector_url = inspector.as_ref().map(Inspector::url);
    let hub = hub(subscribers(screen.as_ref(), inspector.as_ref()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let options = Options {
        events: Some(tx),
        observer: hub.clone().map(|h| h as Arc<dyn ExchangeObserver>),
        instance: Some(identity.instance().to_owned()),
        stop_if_unreachable,
    };
    let asked = Arc::new(Notify::new());
    let drawing = match &screen {
        Some(state) => Some(Screen::start(state.clone(), asked.clone())?),
        None => None,
    };
    let tell = match drawing {
        Some(_) => Tell::Log,
        None => tell,
    };
    let result = actix_rt::System::new().block_on(async {
        let inspecting = match inspector {
            Some(inspector) => Some(inspector.start(config.clone())?),
            None => None,
        };
        let told = Told {
            tell,
            inspector: inspector_url,
        };
        let seen = registered(rx, config.clone(), identity, told, screen.clone());
        actix_rt::spawn(seen);
        let stop = crate::signals::watched(stop_asked(asked.clone(), screen.clone()));
        let result = burrow_client::run(config, options, stop).await;
        if let Some(inspecting) = inspecting {
            inspecting.stop(false).await;
        }
        result.map_err(anyhow::Error::new)
    });
    if let Some(drawing) = drawing {
        drawing.close();
    }
    if let Some(hub) = hub {
        hub.close();
    }
    result?;
    log::info!("stopped");
    Ok(())
}

/// Who takes the traffic's events: the screen (which covers standard
/// error and shows the requests itself) or the request log, and the
/// inspector.
fn subscribers(screen: Option<&Shared>, inspector: Option<&Inspector>) -> Vec<Box<dyn Subscriber>> {
    let mut subscribers = match screen {
        Some(screen) => vec![Box::new(screen.clone()) as Box<dyn Subscriber>],
        None => request_log(),
    };
    if let Some(inspector) = inspector {
        if let Some(screen) = screen {
            screen.lock().inspector = Some(inspector.url());
        }
        subscribers.push(inspector.subscriber());
    }
    subscribers
}

/// Ends when a signal or the screen's Ctrl-C asks the client to stop.
async fn stop_asked(asked: Arc<Notify>, screen: Option<Shared>) {
    tokio::select! {
        () = crate::signals::stop_requested() => {}
        () = asked.notified() => {}
    }
    if let Some(screen) = screen {
        screen.stopping();
    }
}

/// `config` with the command line's `--inspect`, if given.
pub fn inspecting(mut config: ClientConfig, flag: Option<&str>) -> anyhow::Result<ClientConfig> {
    if let Some(flag) = flag {
        config.inspect = config.inspect.with_flag(flag).map_err(anyhow::Error::msg)?;
    }
    Ok(config)
}

/// The inspector the configuration asks for, its address bound. A taken
/// default address is only a warning: the tunnel matters more.
pub fn inspector(config: &ClientConfig) -> anyhow::Result<Option<Inspector>> {
    match Inspector::bind(&config.inspect, config) {
        Ok(inspector) => Ok(inspector),
        Err(why) if !config.inspect.given => {
            log::warn!("{why}; going on without the inspector");
            Ok(None)
        }
        Err(why) => Err(anyhow::anyhow!(why)),
    }
}

/// How the tunnels' coming up is told, and the inspector's address.
struct Told {
    tell: Tell,
    inspector: Option<String>,
}

/// The request log, when its lines would be shown.
pub fn request_log() -> Vec<Box<dyn Subscriber>> {
    RequestLog::if_enabled()
        .map(|l| Box::new(l) as Box<dyn Subscriber>)
        .into_iter()
        .collect()
}

/// The hub that hands the client's traffic to `subscribers`, if any.
pub fn hub(subscribers: Vec<Box<dyn Subscriber>>) -> anyhow::Result<Option<Arc<Hub>>> {
    Hub::start(subscribers).map_err(|e| anyhow::anyhow!("cannot start the event thread: {e}"))
}

/// Keeps the hosts the tunnels are registered as for the next run, and
/// prints their public URLs when `tell` says so (again only when they
/// changed).
async fn registered(
    mut events: UnboundedReceiver<ClientEvent>,
    config: ClientConfig,
    identity: Identity,
    told: Told,
    screen: Option<Shared>,
) {
    let mut shown: Vec<String> = Vec::new();
    let mut inspector = told.inspector;
    if let (Tell::Log, Some(url)) = (told.tell, &inspector) {
        log::info!("inspector: {url}");
    }
    while let Some(event) = events.recv().await {
        if let Some(screen) = &screen {
            screen.client_event(&event, || urls(&config));
        }
        let ClientEvent::Registered { hosts } = event else {
            continue;
        };
        if hosts == shown {
            continue;
        }
        identity.remember(&hosts);
        if told.tell == Tell::Stdout {
            let mut out = std::io::stdout().lock();
            for (host, tunnel) in hosts.iter().zip(&config.tunnels) {
                let url = config.public_url(host);
                let _ = writeln!(out, "Forwarding {url} -> {}", tunnel.local);
            }
            // Once, after the first URLs.
            if let Some(url) = inspector.take() {
                let _ = writeln!(out, "Inspector  {url}");
            }
            let _ = out.flush();
        }
        shown = hosts;
    }
}

/// Each tunnel's public URL and local service, as registered.
fn urls(config: &ClientConfig) -> Vec<(String, String)> {
    (0..config.tunnels.len())
        .map(|i| {
            let url = config.public_url(&config.host_of(i));
            (url, config.tunnels[i].local.clone())
        })
        .collect()
}
