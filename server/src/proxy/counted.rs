//! A request counted: its time until the response head into the server's
//! histogram, its status class and its body bytes each way into its host's
//! counts. A plain add per chunk, one atomic add per request and direction.

use std::{
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{HttpResponse, ResponseError};
use burrow_common::flow::{BodyError, RecvBody};
use bytes::Bytes;
use futures_util::Stream;

use crate::{error::ProxyError, metrics::Metrics, tunnel::TunnelState};

/// Counts a request's outcome, once its response head is settled.
pub(super) fn answered(
    metrics: &Metrics,
    tunnel: Option<&TunnelState>,
    result: &Result<HttpResponse, ProxyError>,
    started: Instant,
) {
    metrics.timed(started.elapsed());
    let status = match result {
        Ok(response) => response.status(),
        Err(e) => {
            if let Some(reason) = e.refusal() {
                metrics.refused_request(reason);
            }
            e.status_code()
        }
    };
    if let Some(tunnel) = tunnel {
        tunnel.stats.answered(status);
    }
}

/// The answer's body on its way to the caller, counted.
pub(super) struct Counted {
    body: RecvBody,
    tunnel: Arc<TunnelState>,
    bytes: u64,
}

impl Counted {
    pub(super) fn new(body: RecvBody, tunnel: Arc<TunnelState>) -> Self {
        Counted {
            body,
            tunnel,
            bytes: 0,
        }
    }

    /// Counts a body that came whole with the head (the stream then
    /// carries none).
    pub(super) fn inline(&mut self, len: usize) {
        self.bytes += len as u64;
    }
}

impl Stream for Counted {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.bytes += chunk.len() as u64;
        }
        next
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let stats = &self.tunnel.stats;
        stats.bytes_out.fetch_add(self.bytes, Ordering::Relaxed);
    }
}

/// The caller's body bytes, added to the host's count when the upload ends.
pub(super) struct BytesIn {
    tunnel: Arc<TunnelState>,
    bytes: u64,
}

impl BytesIn {
    pub(super) fn new(tunnel: Arc<TunnelState>) -> Self {
        BytesIn { tunnel, bytes: 0 }
    }

    pub(super) fn add(&mut self, n: usize) {
        self.bytes += n as u64;
    }
}

impl Drop for BytesIn {
    fn drop(&mut self) {
        let stats = &self.tunnel.stats;
        stats.bytes_in.fetch_add(self.bytes, Ordering::Relaxed);
    }
}
