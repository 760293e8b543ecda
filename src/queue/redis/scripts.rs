//! The Lua scripts of the Redis backend, each made of `lua/common.lua` (key
//! names, the shared steps — place, activate, create_job, finish, held,
//! release, emit — and the buffered index/counter writes applied by
//! `flush()` at the end of every writing script) followed by its own body. Keeping every multi-key change
//! in one script is what makes ingestion, completion and FIFO release atomic.

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// All scripts, loaded once per queue handle (redis-rs runs them by SHA and
/// loads them again by itself after a Redis restart).
pub(super) struct Scripts {
    pub ingest: Script,
    pub enqueue: Script,
    pub lease: Script,
    pub load: Script,
    pub renew: Script,
    pub complete: Script,
    pub retry: Script,
    pub defer: Script,
    pub dead: Script,
    pub redrive: Script,
    pub stats: Script,
    pub deadby: Script,
    pub prune: Script,
    /// Standalone (no common prelude): it touches only its own key.
    pub rate_limit: Script,
}

/// The batched scripts carry several partitions of one master on a cluster
/// (`batch.rs`): Redis (7.0+) lets a script reach keys of several slots only
/// when it says so, in this first line. One server and Sentinel get the
/// scripts without it, as before (a flagged script is also refused as a
/// whole when Redis is over `maxmemory`, where a script without flags is
/// refused at its first write).
const CROSS_SLOT: &str = "#!lua flags=allow-cross-slot-keys";

fn batched(body: &str, cluster: bool) -> Script {
    if cluster {
        Script::new(&format!("{CROSS_SLOT}\n{COMMON}\n{body}"))
    } else {
        with_common(body)
    }
}

fn with_common(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

impl Scripts {
    /// `cluster`: the batched scripts carry the cross-slot flag.
    pub fn new(cluster: bool) -> Self {
        Scripts {
            ingest: batched(include_str!("lua/ingest.lua"), cluster),
            enqueue: with_common(include_str!("lua/enqueue.lua")),
            lease: batched(include_str!("lua/lease.lua"), cluster),
            load: with_common(include_str!("lua/load.lua")),
            renew: with_common(include_str!("lua/renew.lua")),
            complete: batched(include_str!("lua/complete.lua"), cluster),
            retry: with_common(include_str!("lua/retry.lua")),
            defer: with_common(include_str!("lua/defer.lua")),
            dead: with_common(include_str!("lua/dead.lua")),
            redrive: with_common(include_str!("lua/redrive.lua")),
            stats: with_common(include_str!("lua/stats.lua")),
            deadby: with_common(include_str!("lua/deadby.lua")),
            prune: with_common(include_str!("lua/prune.lua")),
            rate_limit: Script::new(include_str!("lua/rate_limit.lua")),
        }
    }
}
