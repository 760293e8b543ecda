//! The HTTP listeners: accept connections and serve a router on each, with
//! the connection limits of SPEC §11 and a bounded shutdown.
//!
//! `axum::serve` has no header, body or idle timeout and no connection cap,
//! and its graceful shutdown waits for every connection forever: 1,500
//! clients sending half a request line kept the daemon alive after SIGTERM.
//! Here each listener is an accept loop over hyper-util's HTTP/1 + HTTP/2
//! (h2c) connection builder:
//!
//! - `server.max_connections`: a semaphore permit is taken *before*
//!   `accept`, so past the cap new connections wait unaccepted in the
//!   kernel's backlog instead of costing a task, a buffer and a descriptor;
//! - `server.header_timeout` and `server.idle_timeout`: a watchdog per
//!   connection ([`watch`]) closes a connection whose request headers are
//!   incomplete, or that sat idle between requests, for too long;
//! - `server.body_timeout`: every request body carries a deadline
//!   ([`body`]); a body not complete by then fails the read, the answer
//!   becomes 408 with hookyard's JSON error body and the connection closes
//!   (whatever route read the body and however it reported the failure);
//! - `ConnectInfo<SocketAddr>` is put on every request for the handlers
//!   that read the peer address (IP allow lists, rate limits).
//!
//! Shutdown takes two signals. `stop`: the accept loop ends (the listening
//! socket closes) and every connection is asked to finish gracefully
//! (requests in progress complete, idle connections close). `kill`: the
//! grace is over and whatever is still open is dropped. [`serve`] returns
//! once every connection is gone. (hyper runs each HTTP/2 request in a task
//! of its own, which a dropped connection does not end; those end with the
//! runtime, which `main` gives 300 ms after `run` returns, inside the
//! bound's last second.)

pub mod answer;
mod body;
mod connection;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The connection limits of one listener (`server:` keys, read at start).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a connection gets to complete its request headers, counted from
    /// accept, or from its first byte after an idle keep-alive.
    pub header_timeout: Duration,
    /// Time a request gets to complete its body, counted from its headers.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Open connections at most; the next ones wait unaccepted.
    pub max_connections: u32,
}

impl Limits {
    /// The limits `server:` configures.
    pub fn of(server: &crate::config::Server) -> Limits {
        Limits {
            header_timeout: server.header_timeout,
            body_timeout: server.body_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// Serve `router` on `listener` until `stop`, then until every connection
/// finished or `kill` (see the module header).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(
        usize::try_from(limits.max_connections).unwrap_or(usize::MAX),
    ));
    let builder = Arc::new(builder());
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // Never closed; if it were, no connection could be served.
                Err(_) => break,
            },
        };
        let Some((stream, peer)) = accept(&listener, &stop).await else {
            break;
        };
        let conn = connection::Connection {
            router: router.clone(),
            peer,
            limits,
            builder: builder.clone(),
            stop: stop.clone(),
            kill: kill.clone(),
            _permit: permit,
        };
        connections.spawn(conn.run(stream));
    }
    // New connections are refused from here on.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The next connection, or None once `stop` is cancelled.
async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let res = tokio::select! {
            _ = stop.cancelled() => return None,
            res = listener.accept() => res,
        };
        match res {
            Ok(accepted) => return Some(accepted),
            // The client gave up before we accepted: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: accepting again at
                // once would spin. Lower server.max_connections or raise
                // the process's open-file limit.
                tracing::warn!(
                    "cannot accept a connection: {e}; retrying in 1s (is the open-file limit below server.max_connections?)"
                );
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// HTTP/1.1 and HTTP/2 with prior knowledge (h2c), chosen per connection by
/// its first bytes.
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's own header timeout starts as soon as it waits for the next
    // request on a kept-alive connection, so it would close every idle
    // connection after header_timeout and idle_timeout could never apply;
    // and the HTTP version sniffing before it has no timer at all. The
    // watchdog in `watch` owns both timeouts, for both protocols.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    builder
}
