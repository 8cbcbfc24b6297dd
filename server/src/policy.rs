//! Who may claim which host. A host is configured exactly, or under a
//! wildcard entry (`*.dev.example.com`) whose secret claims any single
//! label below its domain. Who may call a host is [`crate::callers`].

use std::collections::HashMap;

use burrow_common::Token;

use crate::{
    config::{normalize_host, HostConfig, Secret},
    error::RegisterError,
};

/// The configured hosts and what claims each.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Each host's secret and the index of its `[[hosts]]` entry.
    exact: HashMap<String, (Secret, usize)>,
    /// Keyed by the domain below the `*.`.
    wildcard: HashMap<String, (Secret, usize)>,
    /// The wildcard entries that offer random names: domain, secret, index.
    random: Vec<(String, Secret, usize)>,
}

impl HostPolicy {
    /// The policy for the configured hosts.
    pub fn new(hosts: &[HostConfig]) -> Self {
        let mut policy = HostPolicy::default();
        for (i, h) in hosts.iter().enumerate() {
            let secret = (h.secret.clone(), i);
            if let (true, Some(domain)) = (h.random, h.wildcard_domain()) {
                policy.random.push((domain.to_owned(), h.secret.clone(), i));
            }
            match h.wildcard_domain() {
                Some(domain) => policy.wildcard.insert(domain.to_owned(), secret),
                None => policy.exact.insert(h.host.clone(), secret),
            };
        }
        policy
    }

    /// The host `requested` in canonical form, and the index of the entry
    /// that grants it, if `token` may claim it. An exact entry decides for
    /// its host even when a wildcard covers it too, so a host given its own
    /// token is not claimed with the wildcard's.
    pub fn claim(&self, requested: &str, token: &Token) -> Result<(String, usize), RegisterError> {
        let Some(host) = normalize_host(requested) else {
            return Err(RegisterError::InvalidHost(requested.to_owned()));
        };
        let secret = self.exact.get(&host).or_else(|| {
            let (_, domain) = host.split_once('.')?;
            self.wildcard.get(domain)
        });
        let Some((secret, entry)) = secret else {
            return Err(RegisterError::NotConfigured(host));
        };
        if !secret.matches(token) {
            return Err(RegisterError::BadToken(host));
        }
        Ok((host, *entry))
    }

    /// The entry of `host` when it is configured exactly (in canonical form).
    pub fn exact_entry(&self, host: &str) -> Option<usize> {
        self.exact.get(host).map(|(_, entry)| *entry)
    }

    /// The domain and entry under which `token` may have a random name:
    /// the first entry offering them whose secret it is.
    pub fn random_domain(&self, token: &Token) -> Result<(&str, usize), RegisterError> {
        self.random
            .iter()
            .find(|(_, secret, _)| secret.matches(token))
            .map(|(domain, _, entry)| (domain.as_str(), *entry))
            .ok_or(RegisterError::NoRandomNames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sha256_hex;

    fn policy(entries: &[(&str, Secret)]) -> HostPolicy {
        let hosts: Vec<HostConfig> = entries
            .iter()
            .map(|(host, secret)| HostConfig {
                host: host.to_string(),
                secret: secret.clone(),
                random: false,
            })
            .collect();
        HostPolicy::new(&hosts)
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let policy = policy(&[("a.localhost", Secret::Token(Token::new("t")))]);
        let t = Token::new("t");
        assert_eq!(
            policy.claim("A.localhost", &t),
            Ok(("a.localhost".into(), 0))
        );
        assert_eq!(
            policy.claim("a b", &t),
            Err(RegisterError::InvalidHost("a b".into()))
        );
        assert_eq!(
            policy.claim("b.localhost", &t),
            Err(RegisterError::NotConfigured("b.localhost".into()))
        );
        assert_eq!(
            policy.claim("a.localhost", &Token::new("u")),
            Err(RegisterError::BadToken("a.localhost".into()))
        );
    }

    #[test]
    fn a_wildcard_claims_one_label_below_its_domain_only() {
        let hash = sha256_hex("w");
        let mut bytes = [0; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap();
        }
        let policy = policy(&[
            ("*.dev.localhost", Secret::Sha256(bytes)),
            ("own.dev.localhost", Secret::Token(Token::new("own"))),
        ]);
        let w = Token::new("w");
        assert_eq!(
            policy.claim("x.dev.localhost", &w),
            Ok(("x.dev.localhost".into(), 0))
        );
        for outside in ["dev.localhost", "a.b.dev.localhost", "x.localhost"] {
            assert_eq!(
                policy.claim(outside, &w),
                Err(RegisterError::NotConfigured(outside.into())),
                "{outside}"
            );
        }
        assert!(matches!(
            policy.claim("*.dev.localhost", &w),
            Err(RegisterError::InvalidHost(_))
        ));
        assert_eq!(
            policy.claim("x.dev.localhost", &Token::new("x")),
            Err(RegisterError::BadToken("x.dev.localhost".into()))
        );
        // The exact entry's own token, not the wildcard's.
        assert_eq!(
            policy.claim("own.dev.localhost", &w),
            Err(RegisterError::BadToken("own.dev.localhost".into()))
        );
        assert!(policy
            .claim("own.dev.localhost", &Token::new("own"))
            .is_ok());
    }
}
