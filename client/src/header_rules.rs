//! A tunnel's header rules: fields removed, set or added on the way to the
//! local service and on the way back, and `host_header = "rewrite"`, which
//! gives the local service its own authority as `Host` (development
//! servers such as Vite's and webpack's refuse hosts they do not know).
//! A tunnel without rules has none of this on its path.

use awc::http::{
    header::{HeaderMap, HeaderName, HeaderValue, HOST},
    uri::Authority,
};
use burrow_common::protocol::HeaderList;
use bytes::Bytes;
use serde::Deserialize;

/// `[tunnels.request_headers]` or `[tunnels.response_headers]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFieldRules {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    add: std::collections::BTreeMap<String, String>,
}

/// Changes to one direction's fields: removals first, then fields set
/// (replacing any of that name), then fields added beside any there.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl RawFieldRules {
    /// The rules, checked; the error names the bad field.
    pub fn validate(self) -> Result<FieldRules, String> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.trim().as_bytes())
                .map_err(|_| format!("`{n}` is not a header name"))
        };
        let pair = |(n, v): (String, String)| {
            let value = HeaderValue::from_str(&v)
                .map_err(|_| format!("the value for `{n}` is not a header value"))?;
            Ok::<_, String>((name(&n)?, value))
        };
        Ok(FieldRules {
            remove: self
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set: self.set.into_iter().map(pair).collect::<Result<_, _>>()?,
            add: self.add.into_iter().map(pair).collect::<Result<_, _>>()?,
        })
    }
}

impl FieldRules {
    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the rules to a header map.
    pub fn apply(&self, map: &mut HeaderMap) {
        for name in &self.remove {
            map.remove(name);
        }
        for (name, value) in &self.set {
            map.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            map.append(name.clone(), value.clone());
        }
    }

    /// Applies the rules to a field list (names in lower case).
    pub fn apply_list(&self, list: &mut HeaderList) {
        let named = |n: &[u8], r: &HeaderName| r.as_str().as_bytes() == n;
        list.retain(|(n, _)| {
            !self.remove.iter().any(|r| named(n, r)) && !self.set.iter().any(|(r, _)| named(n, r))
        });
        for (name, value) in self.set.iter().chain(&self.add) {
            let name = Bytes::copy_from_slice(name.as_str().as_bytes());
            list.push((name, Bytes::copy_from_slice(value.as_bytes())));
        }
    }
}

/// Everything a tunnel changes in the fields it relays.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// On the way to the local service.
    pub request: FieldRules,
    /// On the way back to the caller.
    pub response: FieldRules,
    /// `Host` becomes this (the local service's own authority).
    pub host: Option<HeaderValue>,
}

impl HeaderRules {
    /// The rules, or `None` when they change nothing.
    pub fn new(
        request: FieldRules,
        response: FieldRules,
        rewrite_host: Option<&Authority>,
    ) -> Option<Self> {
        let host = rewrite_host.and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if request.is_empty() && response.is_empty() && host.is_none() {
            return None;
        }
        Some(HeaderRules {
            request,
            response,
            host,
        })
    }

    /// Applies the request rules (and the `Host` rewrite) to a map.
    pub fn apply_request(&self, map: &mut HeaderMap) {
        if let Some(host) = &self.host {
            map.insert(HOST, host.clone());
        }
        self.request.apply(map);
    }

    /// Applies the request rules (and the `Host` rewrite) to a list.
    pub fn apply_request_list(&self, list: &mut HeaderList) {
        if let Some(host) = &self.host {
            list.retain(|(n, _)| n.as_ref() != b"host");
            list.insert(
                0,
                (
                    Bytes::from_static(b"host"),
                    Bytes::copy_from_slice(host.as_bytes()),
                ),
            );
        }
        self.request.apply_list(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> FieldRules {
        let raw: RawFieldRules = toml::from_str(
            "remove = [\"X-Gone\"]\nset = { \"x-set\" = \"new\" }\nadd = { \"x-add\" = \"2\" }\n",
        )
        .unwrap();
        raw.validate().unwrap()
    }

    #[test]
    fn maps_and_lists_change_alike() {
        let mut map = HeaderMap::new();
        for (n, v) in [
            ("x-gone", "a"),
            ("x-set", "old"),
            ("x-set", "old2"),
            ("x-add", "1"),
        ] {
            map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let mut list: HeaderList = map
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_str().as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect();
        rules().apply(&mut map);
        rules().apply_list(&mut list);
        assert!(map.get("x-gone").is_none());
        assert_eq!(map.get_all("x-set").collect::<Vec<_>>(), ["new"]);
        assert_eq!(map.get_all("x-add").collect::<Vec<_>>(), ["1", "2"]);
        let mut from_list: Vec<_> = list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let mut from_map: Vec<_> = map
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        from_list.sort();
        from_map.sort();
        assert_eq!(from_list, from_map);
    }

    #[test]
    fn bad_names_and_values_are_named() {
        let raw: RawFieldRules = toml::from_str("set = { \"bad name\" = \"v\" }\n").unwrap();
        assert!(raw.validate().unwrap_err().contains("bad name"));
        let raw: RawFieldRules = toml::from_str("add = { \"x\" = \"a\\nb\" }\n").unwrap();
        assert!(raw.validate().unwrap_err().contains("`x`"));
    }
}
