//! What can go wrong while a certificate is obtained or kept. Each error's
//! text carries its reason, as it is logged once, where a try ends.

use std::{io, path::PathBuf};

use instant_acme::{AuthorizationStatus, OrderStatus};

/// Why a certificate could not be obtained, cached or loaded.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server refused a step, or could not be reached.
    #[error("{step}: {error}")]
    Protocol {
        /// What was being done, such as "creating the account".
        step: &'static str,
        /// What instant-acme reported (the server's problem document, a
        /// connection error, a timeout).
        error: instant_acme::Error,
    },
    /// None of the challenges offered can be answered here.
    #[error("the ACME server offers no challenge this server answers (http-01, tls-alpn-01)")]
    NoChallenge,
    /// An authorization ended in a state other than valid.
    #[error("the authorization is {0:?}")]
    Authorization(AuthorizationStatus),
    /// The order ended in a state other than ready or valid.
    #[error("the order is {0:?} (its challenge failed validation)")]
    Order(OrderStatus),
    /// A key, a signing request or a challenge certificate could not be made.
    #[error("cannot make a key or a certificate request: {0}")]
    Key(#[from] rcgen::Error),
    /// A file of the cache could not be read or written.
    #[error("{}: {error}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The reason.
        error: io::Error,
    },
    /// Started outside a Tokio runtime, which would run its tasks.
    #[error("the ACME service must start inside a Tokio runtime")]
    NoRuntime,
    /// A certificate (issued or cached) is not usable.
    #[error("unusable certificate: {0}")]
    Certificate(String),
}

impl AcmeError {
    /// Names `step` for an instant-acme error (`map_err(AcmeError::at(..))`).
    pub(super) fn at(step: &'static str) -> impl FnOnce(instant_acme::Error) -> Self {
        move |error| AcmeError::Protocol { step, error }
    }

    /// Names `path` for an I/O error.
    pub(super) fn cache(path: &std::path::Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |error| AcmeError::Cache {
            path: path.to_owned(),
            error,
        }
    }
}
