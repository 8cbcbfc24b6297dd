//! The request inspector's settings ([`crate::inspect`]): where it listens
//! (or that it is off) and what it keeps, from `client.toml` or the command
//! line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// The address the inspector takes when none is given: ngrok's.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4040);

/// Ports tried after a default address that is taken (4041, 4042...),
/// before any free one.
pub const NEXT_PORTS: u16 = 10;

/// Exchanges kept by default.
pub const DEFAULT_ENTRIES: usize = 500;

/// Bytes kept of each body by default.
pub const DEFAULT_BODY_BYTES: usize = 1024 * 1024;

/// Bytes of bodies kept in all by default.
pub const DEFAULT_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// What the inspector keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The newest exchanges kept; older ones are dropped.
    pub entries: usize,
    /// Bytes kept of each body (the rest is counted, not kept).
    pub body_bytes: usize,
    /// Bytes of bodies kept in all; the oldest exchanges go first.
    pub total_bytes: usize,
}

impl Limits {
    /// The limits `client.toml` gives (`inspect_entries`,
    /// `inspect_body_kib`, `inspect_memory_mib`), the defaults for those
    /// it does not.
    pub fn new(entries: Option<usize>, body_kib: Option<usize>, memory_mib: Option<usize>) -> Self {
        Limits {
            entries: entries.unwrap_or(DEFAULT_ENTRIES),
            body_bytes: body_kib.map_or(DEFAULT_BODY_BYTES, |k| k.saturating_mul(1024)),
            total_bytes: memory_mib.map_or(DEFAULT_TOTAL_BYTES, |m| m.saturating_mul(1 << 20)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entries: DEFAULT_ENTRIES,
            body_bytes: DEFAULT_BODY_BYTES,
            total_bytes: DEFAULT_TOTAL_BYTES,
        }
    }
}

/// Whether and where the inspector listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `None`: off.
    pub listen: Option<SocketAddr>,
    /// `true` when the address was given (a taken one is then an error,
    /// not a reason to try the next port).
    pub given: bool,
    /// What it keeps.
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: Some(DEFAULT_ADDR),
            given: false,
            limits: Limits::default(),
        }
    }
}

/// `inspect` as written in `client.toml`: an address, or `false`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum RawInspect {
    /// `inspect = true` (the default address) or `false` (off).
    On(bool),
    /// `inspect = "127.0.0.1:4040"`.
    Addr(String),
}

impl Settings {
    /// The settings a configuration file gives.
    pub(crate) fn of(raw: &super::RawConfig) -> Result<Settings, String> {
        let limits = Limits::new(
            raw.inspect_entries,
            raw.inspect_body_kib,
            raw.inspect_memory_mib,
        );
        Settings::new(raw.inspect.as_ref(), limits)
    }

    /// The settings `inspect` (`None`: not written) and the limits give;
    /// the error says what is wrong with the value.
    pub fn new(inspect: Option<&RawInspect>, limits: Limits) -> Result<Settings, String> {
        let (listen, given) = match inspect {
            None | Some(RawInspect::On(true)) => (Some(DEFAULT_ADDR), false),
            Some(RawInspect::On(false)) => (None, false),
            Some(RawInspect::Addr(text)) => (parse_addr(text)?, true),
        };
        if limits.entries == 0 {
            return Err("inspect_entries must be at least 1".into());
        }
        Ok(Settings {
            listen,
            given,
            limits,
        })
    }

    /// These settings with the command line's `--inspect ADDR|off`.
    pub fn with_flag(self, flag: &str) -> Result<Settings, String> {
        Ok(Settings {
            listen: parse_addr(flag)?,
            given: true,
            ..self
        })
    }
}

/// `off` (or `false`), `PORT`, or `HOST:PORT`.
fn parse_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if matches!(text, "off" | "false" | "no") {
        return Ok(None);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Some(SocketAddr::new(DEFAULT_ADDR.ip(), port)));
    }
    let text = text.strip_prefix("http://").unwrap_or(text);
    let text = text.replacen("localhost:", "127.0.0.1:", 1);
    text.parse().map(Some).map_err(|_| {
        format!(
            "inspect: `{text}` is not an address: give HOST:PORT (127.0.0.1:4040), a port, or off"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_ports_and_off_are_understood() {
        let d = Limits::default();
        assert_eq!(
            Settings::new(None, d).map(|s| s.listen),
            Ok(Some(DEFAULT_ADDR))
        );
        let off = RawInspect::On(false);
        assert_eq!(Settings::new(Some(&off), d).map(|s| s.listen), Ok(None));
        let addr = RawInspect::Addr("127.0.0.1:5050".into());
        let s = Settings::new(Some(&addr), d).unwrap_or_default();
        assert_eq!((s.listen.map(|a| a.port()), s.given), (Some(5050), true));
        let s = Settings::default().with_flag("4999").unwrap_or_default();
        assert_eq!(
            s.listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:4999")
        );
        let s = Settings::default().with_flag("off").unwrap_or_default();
        assert_eq!(s.listen, None);
        let bad = Settings::default().with_flag("nowhere").unwrap_err();
        assert!(bad.contains("HOST:PORT"), "{bad}");
    }
}
