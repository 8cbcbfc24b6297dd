//! Which ready session serves a request: the worker's placement, waiting
//! for a host whose client is reconnecting or whose session is finishing
//! its handshake.

use std::{sync::Arc, time::Duration};

use super::{ProxyState, Routed};
use crate::{
    error::ProxyError,
    handle::SessionHandle,
    placement::{Placement, Wait},
    tunnel::TunnelState,
};

/// The ready session serving the host, waiting for one while its client
/// reconnects (or its session finishes its handshake).
pub(super) async fn placed(
    routed: &Routed<'_>,
    state: &ProxyState,
) -> Result<(Arc<SessionHandle>, Arc<TunnelState>), ProxyError> {
    let mut waited = false;
    loop {
        let placed = state
            .worker
            .session_for(&state.shared.registry, &routed.host)
            .await;
        match placed {
            Placement::Ready(session, tunnel) => return Ok((session, tunnel)),
            Placement::Wait(wait) => {
                waited = true;
                wait_for(wait, &routed.host).await?;
            }
            // A host that was waited for and is gone now was given up.
            Placement::Unknown if waited => {
                return Err(ProxyError::Reconnecting(routed.host.to_string()))
            }
            Placement::Unknown => return Err(ProxyError::UnknownHost(routed.host.to_string())),
        }
    }
}

/// Longest wait for a session that registered a host to open to streams
/// (it has its handshake answer to queue first: microseconds, normally).
const OPENING_WAIT: Duration = Duration::from_secs(5);

/// Waits for a host without a ready session (as one of the few requests
/// that may); then its sessions are looked up again.
async fn wait_for(wait: Wait, host: &str) -> Result<(), ProxyError> {
    let gone = || ProxyError::Reconnecting(host.to_owned());
    match wait {
        Wait::Reconnecting(reserved) => reserved.wait().await.map_err(|_| gone()),
        Wait::Opening(session) => tokio::time::timeout(OPENING_WAIT, session.gate.wait_open())
            .await
            .map_err(|_| gone()),
    }
}
