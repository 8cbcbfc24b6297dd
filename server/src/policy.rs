//! Who may claim which host, and who may call it: the one home of
//! per-host rules. A host is configured exactly, or under a wildcard entry
//! (`*.dev.example.com`) whose secret claims any single label below its
//! domain; a tunnel's [`CallerRules`] come with its registration, and the
//! server's own from `[access]`.

use std::{collections::HashMap, net::IpAddr};

use base64::Engine;
use burrow_common::{
    access::{AccessRules, IpRange},
    Token,
};

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

/// Why a caller is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address is not allowed (403).
    Address,
    /// It gave no credentials, or the wrong ones (401).
    Credentials,
}

/// Who may call: IP ranges and basic-auth credentials.
#[derive(Debug, Clone, Default)]
pub struct CallerRules {
    credentials: Option<Token>,
    allow: Vec<IpRange>,
    deny: Vec<IpRange>,
}

impl CallerRules {
    /// The rules `access` asks for; `None` when they let anyone call (so
    /// open tunnels are checked against nothing).
    pub fn new(access: &AccessRules) -> Result<Option<Self>, String> {
        if access.is_empty() {
            return Ok(None);
        }
        let (allow, deny) = access.ranges()?;
        Ok(Some(CallerRules {
            credentials: access.basic_auth.clone(),
            allow,
            deny,
        }))
    }

    /// Whether a caller from `peer` (unknown: `None`) whose request has
    /// the `authorization` value given may call. Addresses are checked
    /// first: a caller from a denied range learns nothing of the
    /// credentials.
    pub fn check(&self, peer: Option<IpAddr>, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        if !self.deny.is_empty() || !self.allow.is_empty() {
            let peer = peer.ok_or(Refusal::Address)?;
            let denied = self.deny.iter().any(|r| r.contains(peer));
            let allowed = self.allow.is_empty() || self.allow.iter().any(|r| r.contains(peer));
            if denied || !allowed {
                return Err(Refusal::Address);
            }
        }
        if let Some(expected) = &self.credentials {
            let given = authorization.and_then(basic_credentials);
            if !given.is_some_and(|g| expected.matches(&g)) {
                return Err(Refusal::Credentials);
            }
        }
        Ok(())
    }
}

/// `user:password` from an `Authorization: Basic ...` value.
fn basic_credentials(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
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

    #[test]
    fn callers_are_checked_by_address_then_credentials() {
        let rules = CallerRules::new(&AccessRules {
            basic_auth: Some(Token::new("ann:pw")),
            allow_ips: vec!["127.0.0.0/8".into()],
            deny_ips: vec!["127.0.0.2".into()],
        })
        .unwrap()
        .unwrap();
        let local = Some("127.0.0.1".parse().unwrap());
        let good = b"Basic YW5uOnB3"; // ann:pw
        assert_eq!(rules.check(local, Some(good)), Ok(()));
        assert_eq!(rules.check(local, Some(b"basic  YW5uOnB3 ")), Ok(()));
        assert_eq!(rules.check(local, None), Err(Refusal::Credentials));
        assert_eq!(
            rules.check(local, Some(b"Basic YW5uOng=")),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            rules.check(local, Some(b"Bearer YW5uOnB3")),
            Err(Refusal::Credentials)
        );
        let denied = Some("127.0.0.2".parse().unwrap());
        assert_eq!(rules.check(denied, Some(good)), Err(Refusal::Address));
        let outside = Some("192.0.2.1".parse().unwrap());
        assert_eq!(rules.check(outside, Some(good)), Err(Refusal::Address));
        assert_eq!(rules.check(None, Some(good)), Err(Refusal::Address));
        assert!(CallerRules::new(&AccessRules::default()).unwrap().is_none());
    }
}
