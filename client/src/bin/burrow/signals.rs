//! Ctrl-C and SIGTERM: the first asks the client to stop gracefully, a
//! second one ends the process at once.

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
