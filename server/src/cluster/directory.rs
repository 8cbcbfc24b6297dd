//! The host directory in Redis: who holds each host (a client instance,
//! under a lease) and which nodes have a connection of that instance.
//!
//! Two keys per host and one per `[[hosts]]` entry, changed only by the
//! scripts below so that each step is one atomic compare-and-set on the
//! Redis server:
//! - `burrow:lease:{host}`: the instance holding it, expiring after the
//!   lease unless a node renews it;
//! - `burrow:nodes:{host}`: a hash from node id to `"{expiry ms} {url}"`,
//!   one field per node with a connection of the instance (a field past
//!   its expiry belongs to a node that stopped renewing: a dead one);
//! - `burrow:entry:{pattern}`: the hosts held under one `[[hosts]]` entry,
//!   scored by when their leases end, for its limit across the nodes.
//!
//! Times come from the Redis server's clock (`TIME`), so the nodes' clocks
//! need not agree. Every change of holder or of node publishes the host on
//! [`CHANGES`], so the nodes' caches of where hosts live are dropped.

use std::time::Duration;

use redis::{aio::ConnectionManager, RedisResult, Script};

/// A script whose body starts with `now`, the Redis server's clock in
/// milliseconds.
macro_rules! timed_script {
    ($body:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            $body
        )
    };
}

/// The channel every change of a host's holder or nodes is published on.
pub const CHANGES: &str = "burrow:changes";

/// Takes or renews `host` for an instance and records this node as one of
/// its holders; counts it among its entry's hosts (KEYS[3], a sorted set
/// scored by expiry), refusing a new one past the entry's limit (ARGV[7]).
/// 0: another instance holds it; 1: renewed; 2: new here; 3: too many.
const CLAIM: &str = timed_script!(
    r"
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[3], ARGV[6]) then
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then return 3 end
end
local known = redis.call('HEXISTS', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('HSET', KEYS[2], ARGV[3], string.format('%d %s', now + ttl, ARGV[4]))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[6])
redis.call('PEXPIRE', KEYS[3], ttl)
if (not held) or known == 0 then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
  return 2
end
return 1
"
);

/// Removes this node from `host`'s holders; when no live node is left,
/// ends the lease if the instance still holds it. Answers how many live
/// nodes are left.
const RELEASE: &str = timed_script!(
    r"
redis.call('HDEL', KEYS[2], ARGV[2])
local live = 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local expiry = tonumber(string.match(fields[i + 1], '^(%d+)'))
  if expiry and expiry > now then live = live + 1 else redis.call('HDEL', KEYS[2], fields[i]) end
end
if live == 0 then
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[3], ARGV[4])
  end
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return live
"
);

/// The live fields of `burrow:nodes:{host}` (KEYS[1]), flat: node id,
/// expiry, URL, for each node whose entry has not expired.
const LIVE: &str = timed_script!(
    r"
local live = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local expiry, url = string.match(fields[i + 1], '^(%d+) (.*)$')
  if expiry and tonumber(expiry) > now then
    table.insert(live, fields[i])
    table.insert(live, expiry)
    table.insert(live, url)
  end
end
return live
"
);

/// One live node holding a host.
struct LiveNode {
    node: String,
    /// When its entry expires, in the Redis server's milliseconds.
    until: u64,
    url: String,
}

/// The `[[hosts]]` entry a host counts against, and how many it may hold.
pub type Quota = (std::sync::Arc<str>, usize);

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Held by another instance.
    Refused,
    /// New, and its entry holds as many hosts as it may already.
    TooMany,
    /// Held by this instance already, through this node.
    Renewed,
    /// New to this node (or to the instance).
    Taken,
}

/// This node's view of the directory.
pub struct Directory {
    conn: ConnectionManager,
    claim: Script,
    release: Script,
    live: Script,
    node: String,
    url: String,
    lease_ms: u64,
}

impl Directory {
    /// The directory on `conn` for node `node`, reached by the others at
    /// `url`.
    pub fn new(conn: ConnectionManager, node: &str, url: &str, lease: Duration) -> Self {
        Directory {
            conn,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            live: Script::new(LIVE),
            node: node.to_owned(),
            url: url.to_owned(),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Takes or renews `host` for `instance`, with this node among its
    /// holders, counted among the hosts of `entry` (of which there may be
    /// `most`).
    pub async fn claim(&self, host: &str, instance: &str, entry: &Quota) -> RedisResult<Claim> {
        let mut conn = self.conn.clone();
        let answer: i64 = self
            .claim
            .key(lease_key(host))
            .key(nodes_key(host))
            .key(entry_key(&entry.0))
            .arg(instance)
            .arg(self.lease_ms)
            .arg(&self.node)
            .arg(&self.url)
            .arg(CHANGES)
            .arg(host)
            .arg(entry.1)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer {
            0 => Claim::Refused,
            1 => Claim::Renewed,
            3 => Claim::TooMany,
            _ => Claim::Taken,
        })
    }

    /// Takes this node off `host`'s holders, ending `instance`'s lease when
    /// no live node is left.
    pub async fn release(&self, host: &str, instance: &str, entry: &Quota) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let _left: i64 = self
            .release
            .key(lease_key(host))
            .key(nodes_key(host))
            .key(entry_key(&entry.0))
            .arg(instance)
            .arg(&self.node)
            .arg(CHANGES)
            .arg(host)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The internal URLs of the other live nodes holding `host`, the one
    /// renewed last first (a node that died renews no more).
    pub async fn locate(&self, host: &str) -> RedisResult<Vec<String>> {
        let mut nodes = self.live(&nodes_key(host)).await?;
        nodes.retain(|n| n.node != self.node);
        nodes.sort_by_key(|n| std::cmp::Reverse(n.until));
        Ok(nodes.into_iter().map(|n| n.url).collect())
    }

    /// The live nodes of the `burrow:nodes:` key `key`.
    async fn live(&self, key: &str) -> RedisResult<Vec<LiveNode>> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self.live.key(key).invoke_async(&mut conn).await?;
        let nodes = flat.chunks_exact(3).map(|n| LiveNode {
            node: n[0].clone(),
            until: n[1].parse().unwrap_or(0),
            url: n[2].clone(),
        });
        Ok(nodes.collect())
    }
}

impl Directory {
    /// Every host some live node holds, with those nodes' ids.
    pub async fn listing(&self) -> RedisResult<Vec<(String, Vec<String>)>> {
        let mut conn = self.conn.clone();
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(nodes_key("*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut hosts = Vec::with_capacity(keys.len());
        for key in keys {
            let nodes: Vec<String> = self.live(&key).await?.into_iter().map(|n| n.node).collect();
            if let (Some(host), false) = (key.strip_prefix("burrow:nodes:"), nodes.is_empty()) {
                hosts.push((host.to_owned(), nodes));
            }
        }
        Ok(hosts)
    }
}

fn lease_key(host: &str) -> String {
    format!("burrow:lease:{host}")
}

fn entry_key(entry: &str) -> String {
    format!("burrow:entry:{entry}")
}

fn nodes_key(host: &str) -> String {
    format!("burrow:nodes:{host}")
}
