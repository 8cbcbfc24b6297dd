//! Who may call a tunnel: the rules a client asks the server to enforce
//! (basic auth, IP ranges), in the form they travel in and the checks both
//! ends make on them. The server checks callers against them before
//! anything reaches the client.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::token::Token;

/// Most address ranges one tunnel's rules may hold (each caller is
/// checked against all of them).
pub const MAX_RANGES: usize = 64;

/// A tunnel's rules for callers, sent with its registration. Empty means
/// anyone may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRules {
    /// `user:password` a caller must give with HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<Token>,
    /// When not empty, only callers in one of these ranges (CIDR) may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<String>,
    /// Callers in these ranges may not call, whatever `allow_ips` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_ips: Vec<String>,
}

impl AccessRules {
    /// `true` when the rules let anyone call.
    pub fn is_empty(&self) -> bool {
        self.basic_auth.is_none() && self.allow_ips.is_empty() && self.deny_ips.is_empty()
    }

    /// Checks every rule; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        self.ranges().map(|_| ())
    }

    /// The allowed and the denied ranges, parsed, once every rule is
    /// checked; the error says which one is wrong and why.
    pub fn ranges(&self) -> Result<(Vec<IpRange>, Vec<IpRange>), String> {
        if self.allow_ips.len() + self.deny_ips.len() > MAX_RANGES {
            return Err(format!("at most {MAX_RANGES} address ranges in all"));
        }
        if let Some(auth) = &self.basic_auth {
            let ok = auth
                .expose()
                .split_once(':')
                .is_some_and(|(user, _)| !user.is_empty());
            if !ok {
                return Err("basic_auth must be `user:password`".into());
            }
        }
        Ok((
            parse_ranges(&self.allow_ips)?,
            parse_ranges(&self.deny_ips)?,
        ))
    }
}

/// An address range in CIDR form (`10.0.0.0/8`, `2001:db8::/32`), or one
/// address (its range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Whether `ip` lies in the range. An IPv4 address that arrives mapped
    /// into IPv6 (`::ffff:10.0.0.1`) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("`{text}` is not an address range like 10.0.0.0/8 or ::1/128");
        let range = match text.contains('/') {
            true => text.parse::<IpNet>().map_err(|_| bad())?,
            false => IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?),
        };
        Ok(IpRange(canonical(range)))
    }
}

/// An IPv4 range written mapped into IPv6 (`::ffff:10.0.0.0/104`) as the
/// IPv4 range, as the addresses it is checked against are.
fn canonical(range: IpNet) -> IpNet {
    match range {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(range, IpNet::V4),
            None => range,
        },
        _ => range,
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a list of ranges; the error names the first bad one.
fn parse_ranges(list: &[String]) -> Result<Vec<IpRange>, String> {
    list.iter().map(|r| r.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_what_their_prefix_covers() {
        let r: IpRange = "10.1.0.0/16".parse().unwrap();
        assert!(r.contains(ip("10.1.200.3")));
        assert!(r.contains(ip("::ffff:10.1.0.9")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(!r.contains(ip("::1")));
        let one: IpRange = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let mapped: IpRange = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0/8", "1.2.3.4/x"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_are_checked_before_they_travel() {
        let mut rules = AccessRules::default();
        assert!(rules.is_empty() && rules.validate().is_ok());
        rules.basic_auth = Some(Token::new("nocolon"));
        assert!(rules.validate().is_err());
        rules.basic_auth = Some(Token::new("user:pa:ss"));
        rules.allow_ips = vec!["10.0.0.0/8".into()];
        assert!(rules.validate().is_ok());
        rules.deny_ips = vec!["bogus".into()];
        assert!(rules.validate().unwrap_err().contains("bogus"));
    }
}
