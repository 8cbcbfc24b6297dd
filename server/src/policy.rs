//! Who may claim which host: the one home of per-host rules. Today that is
//! each configured host's token; access rules for callers (basic auth, IP
//! ranges) belong here too.

use std::collections::HashMap;

use burrow_common::Token;

use crate::{
    config::{normalize_host, HostConfig},
    error::RegisterError,
};

/// The configured hosts and what claims each.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    tokens: HashMap<String, Token>,
}

impl HostPolicy {
    /// The policy for the configured hosts.
    pub fn new(hosts: &[HostConfig]) -> Self {
        HostPolicy {
            tokens: hosts
                .iter()
                .map(|h| (h.host.clone(), h.token.clone()))
                .collect(),
        }
    }

    /// The host `requested` in canonical form, if `token` may claim it.
    pub fn claim(&self, requested: &str, token: &Token) -> Result<String, RegisterError> {
        let Some(host) = normalize_host(requested) else {
            return Err(RegisterError::InvalidHost(requested.to_owned()));
        };
        let Some(expected) = self.tokens.get(&host) else {
            return Err(RegisterError::NotConfigured(host));
        };
        if !expected.matches(token.expose()) {
            return Err(RegisterError::BadToken(host));
        }
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_reason() {
        let policy = HostPolicy::new(&[HostConfig {
            host: "a.localhost".into(),
            token: Token::new("t"),
        }]);
        assert_eq!(
            policy.claim("A.localhost", &Token::new("t")),
            Ok("a.localhost".into())
        );
        assert_eq!(
            policy.claim("a b", &Token::new("t")),
            Err(RegisterError::InvalidHost("a b".into()))
        );
        assert_eq!(
            policy.claim("b.localhost", &Token::new("t")),
            Err(RegisterError::NotConfigured("b.localhost".into()))
        );
        assert_eq!(
            policy.claim("a.localhost", &Token::new("u")),
            Err(RegisterError::BadToken("a.localhost".into()))
        );
    }
}
