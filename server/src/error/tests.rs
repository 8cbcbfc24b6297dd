//! Every answer the map gives follows from what its error says of itself:
//! the side, whether waiting helps, whether the connection closes.

use actix_web::{http::StatusCode, ResponseError};

use super::{ProxyError, Side};
use crate::caller_io::HeadProblem;

fn every_error() -> Vec<ProxyError> {
    let h = || "h.localhost".to_owned();
    let d = || "why".to_owned();
    vec![
        ProxyError::BadHead(HeadProblem::TwoHosts),
        ProxyError::BadHead(HeadProblem::TooLarge),
        ProxyError::MissingHost,
        ProxyError::UnknownHost(h()),
        ProxyError::TunnelGone(h()),
        ProxyError::LocalUnreachable {
            host: h(),
            detail: d(),
        },
        ProxyError::LocalError {
            host: h(),
            detail: d(),
        },
        ProxyError::Timeout {
            host: h(),
            secs: 30,
        },
        ProxyError::LocalTimeout {
            host: h(),
            detail: d(),
        },
        ProxyError::HeadTooLarge,
        ProxyError::UpgradeUnsupported("h2c".into()),
        ProxyError::BadRequest(d()),
        ProxyError::Forbidden(h()),
        ProxyError::BodyTooLarge(10),
        ProxyError::Busy { host: h(), max: 1 },
        ProxyError::RateLimited {
            host: h(),
            retry_after: 3,
        },
        ProxyError::Reconnecting(h()),
        ProxyError::ShuttingDown,
        ProxyError::Unauthorized(h()),
        ProxyError::BadResponse {
            host: h(),
            detail: d(),
        },
    ]
}

#[test]
fn each_answer_follows_from_its_error() {
    for e in every_error() {
        let response = e.error_response();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(response.status(), e.status_code(), "{e}");
        assert_eq!(
            header("retry-after"),
            e.retry_after().map(|s| s.to_string()),
            "{e}"
        );
        assert_eq!(
            response.head().connection_type() == actix_web::http::ConnectionType::Close,
            e.closes(),
            "{e}"
        );
        assert_eq!(header("x-burrow-error").as_deref(), Some("1"), "{e}");
        // The side decides the class: the caller's and the server's own
        // refusals are 4xx or 503, what failed past the server is 5xx.
        let status = e.status_code();
        match e.side() {
            Side::Caller => assert!(
                status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED,
                "{e}"
            ),
            Side::Server => assert!(
                matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{e}"
            ),
            Side::Tunnel | Side::Local => assert!(status.is_server_error(), "{e}"),
        }
        // Only a wait of some seconds can help a 429 or a 503.
        let waits = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(e.retry_after().is_some(), waits, "{e}");
    }
}
