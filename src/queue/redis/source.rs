//! Where the queue's connections come from (SPEC §16).
//!
//! - One server (`redis://`): a redis-rs `ConnectionManager`, which
//!   reconnects to the same address by itself, as before.
//! - A master watched by Sentinel (`redis+sentinel://`, `address.rs`): the
//!   sentinels are asked which server is the master, and asked again
//!   whenever a command on the master's connection fails in a way that
//!   says the master may be gone or demoted (the connection dropped or
//!   timed out, or the server answers READONLY / MASTERDOWN). A
//!   `ConnectionManager` cannot do that: it would reconnect to the old
//!   address forever. The asking runs in one background task at a time,
//!   every 200 ms until a master answers, so after a failover the queue
//!   follows the promoted replica as soon as the sentinels name it (a
//!   command that fails meanwhile is `Unavailable`: a 503 for ingestion,
//!   a retry later for workers). Redis' own view decides, not ours: the
//!   sentinels report a master only while they do not consider it down,
//!   and redis-rs checks with `ROLE` that the server named is a master.
//!
//! - A Redis Cluster (`redis+cluster://`): redis-rs' cluster connection,
//!   which learns the slot map from the seed nodes, sends each command to
//!   the master of its key's slot, follows MOVED/ASK and refreshes the map
//!   after a failover by itself. Commands without a key (PING, pub/sub)
//!   go to one node; `client()` is a plain client of the first seed (a
//!   PUBLISH reaches every node of a cluster, so a subscription on any one
//!   of them hears it; while that seed is down, replicas notice changes of
//!   the API subscriptions from their counter, within a second).
//!
//! A [`Source`] hands out [`Conn`]s, cheap handles that implement
//! redis-rs' `ConnectionLike`, so every query of the backend runs on
//! either kind unchanged. `client()` gives the current master's
//! `redis::Client` for the connections the backend opens itself (blocking
//! reads, pub/sub). Nothing assumes one connection forever: a source may
//! be opened several times (the ingest connection of `replicas_ack` is a
//! source of its own), and a cluster would add a kind here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

use crate::config::redis_address::{Address, SentinelAddress};

/// How often the sentinels are asked again while no master answers.
const ASK_AGAIN: Duration = Duration::from_millis(200);
/// Connecting to a server (the master, a sentinel) gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens connections to the queue's Redis; cheap to clone.
#[derive(Clone)]
pub(super) enum Source {
    Server {
        client: Client,
        manager: ConnectionManager,
    },
    Sentinel(Arc<Follow>),
    Cluster {
        seeds: Vec<Client>,
        conn: ClusterConnection,
    },
}

impl Source {
    /// Connect to `address`; a command's answer is awaited at most
    /// `response_timeout`.
    pub(super) async fn open(address: &Address, response_timeout: Duration) -> RedisResult<Source> {
        match address {
            Address::Server(url) => {
                let client = Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(2);
                let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(Source::Server { client, manager })
            }
            Address::Sentinel(s) => Ok(Source::Sentinel(Follow::open(s, response_timeout).await?)),
            Address::Cluster(c) => {
                let infos: Vec<ConnectionInfo> = c
                    .nodes
                    .iter()
                    .map(|(host, port)| {
                        let mut redis = RedisConnectionInfo::default();
                        if let Some(user) = &c.username {
                            redis = redis.set_username(user);
                        }
                        if let Some(password) = &c.password {
                            redis = redis.set_password(password);
                        }
                        ConnectionAddr::Tcp(host.clone(), *port)
                            .into_connection_info()
                            .map(|info| info.set_redis_settings(redis))
                    })
                    .collect::<RedisResult<_>>()?;
                let seeds = infos
                    .iter()
                    .map(|i| Client::open(i.clone()))
                    .collect::<RedisResult<_>>()?;
                let client = ClusterClientBuilder::new(infos)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .retries(4)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok(Source::Cluster { seeds, conn })
            }
        }
    }

    /// `cmd`'s answer from every master: the one server's, or each cluster
    /// master's (a refusal of one comes back as a `ServerError` value).
    pub(super) async fn every_master(&self, cmd: &Cmd) -> RedisResult<Vec<Value>> {
        match self {
            Source::Cluster { conn, .. } => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::Special),
                ));
                match conn.clone().route_command(cmd.clone(), routing).await? {
                    Value::Map(pairs) => Ok(pairs.into_iter().map(|(_, v)| v).collect()),
                    one => Ok(vec![one]),
                }
            }
            _ => Ok(vec![cmd.query_async(&mut self.conn()).await?]),
        }
    }

    /// Whether this is a Redis Cluster (partitions, no blocking reads).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Source::Cluster { .. })
    }

    /// A handle on the current connection.
    pub(super) fn conn(&self) -> Conn {
        match self {
            Source::Server { manager, .. } => Conn::Server(manager.clone()),
            Source::Sentinel(follow) => {
                let current = follow.current();
                Conn::Sentinel {
                    conn: current.conn.clone(),
                    generation: current.generation,
                    follow: follow.clone(),
                }
            }
            Source::Cluster { conn, .. } => Conn::Cluster(conn.clone()),
        }
    }

    /// A client of the current master, for connections of their own.
    pub(super) fn client(&self) -> Client {
        match self {
            Source::Server { client, .. } => client.clone(),
            Source::Sentinel(follow) => follow.current().client.clone(),
            Source::Cluster { seeds, .. } => seeds[0].clone(),
        }
    }
}

/// A connection handle of a [`Source`].
pub(super) enum Conn {
    Server(ConnectionManager),
    Sentinel {
        conn: MultiplexedConnection,
        /// Which connection of the source this is, so a failure of an old
        /// one does not send the sentinels asking again.
        generation: u64,
        follow: Arc<Follow>,
    },
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Sentinel {
                conn,
                generation,
                follow,
            } => Box::pin(async move {
                let answer = conn.req_packed_command(cmd).await;
                follow.judge(&answer, *generation);
                answer
            }),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel {
                conn,
                generation,
                follow,
            } => Box::pin(async move {
                let answer = conn.req_packed_commands(cmd, offset, count).await;
                follow.judge(&answer, *generation);
                answer
            }),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Sentinel { conn, .. } => conn.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether an error means the master may have moved: ask the sentinels.
fn master_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// The master currently followed.
struct Current {
    client: Client,
    conn: MultiplexedConnection,
    generation: u64,
    /// `host:port`, for the log.
    at: String,
}

/// Finds the master through the sentinels.
struct Asker {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master: String,
    node: SentinelNodeConnectionInfo,
    config: AsyncConnectionConfig,
    generations: AtomicU64,
}

impl Asker {
    /// Ask the sentinels for the master and connect to it.
    async fn ask(&self) -> RedisResult<Current> {
        let client = {
            let mut sentinel = self.sentinel.lock().await;
            sentinel
                .async_master_for(&self.master, Some(&self.node))
                .await?
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let at = client.get_connection_info().addr().to_string();
        Ok(Current {
            client,
            conn,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            at,
        })
    }
}

/// The Sentinel kind of [`Source`].
pub(super) struct Follow {
    asker: Asker,
    current: Mutex<Arc<Current>>,
    /// Set while the background task asks the sentinels.
    asking: AtomicBool,
}

impl Follow {
    async fn open(
        address: &SentinelAddress,
        response_timeout: Duration,
    ) -> RedisResult<Arc<Follow>> {
        let sentinels: Vec<ConnectionAddr> = address
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port))
            .collect();
        let mut redis = RedisConnectionInfo::default().set_db(address.db);
        if let Some(user) = &address.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &address.password {
            redis = redis.set_password(password);
        }
        let asker = Asker {
            sentinel: tokio::sync::Mutex::new(Sentinel::build(sentinels)?),
            master: address.master.clone(),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(redis),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(response_timeout)),
            generations: AtomicU64::new(0),
        };
        let first = asker.ask().await?;
        Ok(Arc::new(Follow {
            asker,
            current: Mutex::new(Arc::new(first)),
            asking: AtomicBool::new(false),
        }))
    }

    fn current(&self) -> Arc<Current> {
        // A poisoned lock only means a panic elsewhere mid-swap; the value
        // is still a whole `Arc`.
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a command on connection `generation` answered: when the
    /// answer says the master may have moved, and that connection is
    /// still the current one, start asking the sentinels (once).
    fn judge<T>(self: &Arc<Self>, answer: &RedisResult<T>, generation: u64) {
        let Err(e) = answer else { return };
        if !master_may_have_moved(e) || self.current().generation != generation {
            return;
        }
        if self.asking.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            master = %self.asker.master,
            error = %e,
            "the Redis master's connection failed: asking the sentinels for the master"
        );
        tokio::spawn(find_master(Arc::downgrade(self)));
    }
}

/// Ask until a master answers, then make it current. Ends early when the
/// queue is gone.
async fn find_master(follow: Weak<Follow>) {
    let mut tries = 0u64;
    loop {
        let Some(f) = follow.upgrade() else { return };
        match f.asker.ask().await {
            Ok(found) => {
                let before = f.current().at.clone();
                tracing::info!(
                    master = %f.asker.master,
                    at = %found.at,
                    before = %before,
                    "following the Redis master the sentinels name"
                );
                *f.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(found);
                f.asking.store(false, Ordering::Release);
                return;
            }
            Err(e) => {
                // Every 5 s is enough in the log; a failover takes seconds.
                if tries % 25 == 0 {
                    tracing::warn!(
                        master = %f.asker.master,
                        error = %e,
                        "no Redis master yet (failover in progress, or the sentinels unreachable); asking again"
                    );
                }
                tries += 1;
            }
        }
        drop(f);
        tokio::time::sleep(ASK_AGAIN).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_demoted_master_sends_us_to_the_sentinels() {
        let io = |kind| RedisError::from(std::io::Error::new(kind, "gone"));
        assert!(master_may_have_moved(&io(
            std::io::ErrorKind::ConnectionReset
        )));
        assert!(master_may_have_moved(&io(
            std::io::ErrorKind::UnexpectedEof
        )));
        assert!(master_may_have_moved(&io(std::io::ErrorKind::TimedOut)));
        for kind in [ServerErrorKind::ReadOnly, ServerErrorKind::MasterDown] {
            let e = RedisError::from((ErrorKind::Server(kind), "demoted"));
            assert!(master_may_have_moved(&e), "{kind:?}");
        }
    }

    #[test]
    fn a_command_error_keeps_the_master() {
        for kind in [
            ServerErrorKind::ResponseError,
            ServerErrorKind::NoScript,
            ServerErrorKind::BusyLoading,
        ] {
            let e = RedisError::from((ErrorKind::Server(kind), "answered"));
            assert!(!master_may_have_moved(&e), "{kind:?}");
        }
    }
}
