//! Partitions of the Redis backend (SPEC §16), pure: which keys a
//! partition has, and which partition an event belongs to.
//!
//! On a Redis Cluster the queue is `queue.partitions` copies of the
//! single-server layout (the `//!` header of `redis.rs`), each under its own
//! prefix `<p>:{<tag>}`. Redis hashes only the part of a key between `{`
//! and `}` (the hash tag), so every key of a partition lands in one slot,
//! and one script can touch all of them. Partition i's tag is chosen so
//! its slot lies in the i-th 1/partitions of the slot space: `redis-cli
//! --cluster create` gives each master a contiguous range of slots, so the
//! partitions spread over the masters as evenly as the slots do.
//!
//! An event lives in the partition of its dedupe key (the client's event
//! id, else the trigger's idempotency key, else its own id), so a duplicate
//! meets the first copy's idempotency key inside one script. The daemon
//! draws a new event id until it hashes to that same partition
//! ([`RedisQueue::new_event_id`](super::RedisQueue::new_event_id)), so
//! `GET /v1/events/{id}` finds an event from its id alone.
//!
//! One server and Sentinel have a single partition with the prefix as it
//! always was, so their data and scripts are those of earlier versions.

use std::fmt::Write as _;

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// One partition: its key prefix and the keys every script of it declares.
#[derive(Debug, Clone)]
pub(super) struct Partition {
    /// `<p>` (single partition) or `<p>:{<tag>}`.
    pub prefix: String,
    /// The keys of [`KEY_NAMES`] under `prefix`, in that order (on one
    /// server only the first): every script gets them as `KEYS`
    /// (`lua/common.lua` reads them from there).
    pub keys: Vec<String>,
}

/// The fixed keys of a partition, in the order of `KEYS` in the scripts.
pub(super) const KEY_NAMES: [&str; 13] = [
    "ready",
    "delayed",
    "dead",
    "pending",
    "unfinished",
    "counts",
    "events",
    "deliveries",
    "seq",
    "idem",
    "idempruned",
    "dq",
    "deadby",
];

impl Partition {
    /// `all`: declare every fixed key (a cluster); else only the stream
    /// (one server: the scripts make the others from the prefix, and every
    /// argument costs the daemon per call).
    fn new(prefix: String, all: bool) -> Partition {
        let names = if all { &KEY_NAMES[..] } else { &KEY_NAMES[..1] };
        let keys = names.iter().map(|k| format!("{prefix}:{k}")).collect();
        Partition { prefix, keys }
    }

    /// A key of this partition.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

/// The partitions of a queue under `prefix`: one with the prefix itself,
/// or `count` hash-tagged ones (a cluster).
pub(super) fn layout(prefix: &str, count: u16, cluster: bool) -> Vec<Partition> {
    if !cluster {
        return vec![Partition::new(prefix.to_string(), false)];
    }
    let count = count.max(1);
    (0..count)
        .map(|i| Partition::new(format!("{prefix}:{{{}}}", tag(i, count)), true))
        .collect()
}

/// The first `<i>.<k>` whose slot falls in partition i's share of the slot
/// space. Some k exists for every i: each share holds at least 16 slots,
/// and CRC16 spreads short strings over all of them.
fn tag(i: u16, count: u16) -> String {
    let mut t = String::new();
    for k in 0u32.. {
        t.clear();
        let _ = write!(t, "{i}.{k}");
        if u32::from(slot(t.as_bytes())) * u32::from(count) / SLOTS == u32::from(i) {
            break;
        }
    }
    t
}

/// Redis Cluster's slot of a key (CRC16/XMODEM of its hash tag, or of the
/// whole key when it has none).
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    (crc16::State::<crc16::XMODEM>::calculate(tagged) as u32 % SLOTS) as u16
}

/// The partition (of `count`) a dedupe key or id belongs to: FNV-1a, a
/// hash that is the same in every process and version (the standard
/// library's is not promised to be).
pub(super) fn of(key: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % count as u64) as usize
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Known answers from the Redis Cluster specification and
        // `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn each_partition_tag_falls_in_its_share_of_the_slots() {
        for count in [1u16, 2, 3, 16, 100, 1024] {
            let parts = layout("hy", count, true);
            assert_eq!(parts.len(), count as usize);
            for (i, p) in parts.iter().enumerate() {
                let s = u32::from(slot(p.prefix.as_bytes()));
                assert_eq!(
                    s * u32::from(count) / SLOTS,
                    i as u32,
                    "{count}: {}",
                    p.prefix
                );
                // Every key of the partition is in the same slot.
                for k in &p.keys {
                    assert_eq!(slot(k.as_bytes()), slot(p.prefix.as_bytes()));
                }
            }
        }
        assert!(layout("hy", 16, true)[0].prefix.starts_with("hy:{0."));
        // `CLUSTER KEYSLOT hy:{0.0}` on a real node.
        assert_eq!(slot(b"hy:{0.0}"), 5663);
    }

    #[test]
    fn one_server_keeps_the_prefix_as_it_was() {
        let parts = layout("hookyard", 16, false);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].prefix, "hookyard");
        assert_eq!(parts[0].keys, ["hookyard:ready"]);
        assert_eq!(parts[0].key("d:1"), "hookyard:d:1");
    }

    #[test]
    fn keys_spread_evenly_and_stably() {
        assert_eq!(of("anything", 1), 0);
        // Stable across processes and versions: a known answer.
        assert_eq!(of("event:e1", 16), of("event:e1", 16));
        assert_eq!(of("", 16), (0xcbf2_9ce4_8422_2325u64 % 16) as usize);
        let mut counts = [0u32; 16];
        for n in 0..32_000 {
            counts[of(&ulid::Ulid::new().to_string(), 16)] += 1;
            counts[of(&format!("trigger:github:{n}"), 16)] += 1;
        }
        let mean = 64_000.0 / 16.0;
        for c in counts {
            assert!((f64::from(c) - mean).abs() / mean < 0.05, "{counts:?}");
        }
    }
}
