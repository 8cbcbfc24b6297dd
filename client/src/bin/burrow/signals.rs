//! Ctrl-C and SIGTERM: the first asks the client to stop gracefully, a
//! second one ends the process at once.

use std::future::Future;

/// Resolves on the first Ctrl-C or SIGTERM, after logging what happens
/// next; a second signal exits at once. Must be awaited inside a runtime.
pub async fn stop_requested() {
    next_signal().await;
    log::info!(
        "stopping: no new requests; finishing those in flight (up to {} s, Ctrl-C again to quit now)",
        burrow_client::SHUTDOWN_GRACE.as_secs()
    );
    actix_rt::spawn(async {
        next_signal().await;
        log::warn!("stopped at once; requests in flight were cut");
        std::process::exit(130);
    });
}

/// `stop` watched by a task of its own, as a future that is cheap to poll.
/// The client polls the stop future it is given each time its first
/// connection's task wakes, for nearly every request: a one-shot
/// channel's poll costs a tenth of the signals' futures'
/// (docs/PERFORMANCE.md, "Counted again").
pub fn watched(stop: impl Future<Output = ()> + 'static) -> impl Future<Output = ()> {
    let (tell, told) = tokio::sync::oneshot::channel();
    actix_rt::spawn(async move {
        stop.await;
        let _ = tell.send(());
    });
    async move {
        // A sender dropped unsent: the runtime is ending, a stop as well.
        let _ = told.await;
    }
}

/// The next Ctrl-C or SIGTERM.
pub async fn next_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
