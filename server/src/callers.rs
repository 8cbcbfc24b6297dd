//! Who may call a tunnel: IP ranges and basic-auth credentials. A
//! tunnel's [`CallerRules`] come with its registration, and the server's
//! own from `[access]`, parsed once when the configuration is read.

use std::net::IpAddr;

use base64::Engine;
use burrow_common::{
    access::{AccessRules, IpRange},
    Token,
};

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
