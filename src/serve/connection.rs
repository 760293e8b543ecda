//! One accepted connection: hyper serves it with the router, its watchdog
//! may close it (header or idle timeout), and shutdown first asks it to
//! finish, then drops it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::Limits;
use super::body::TimedBody;
use super::watch::{Watch, Watched};

/// Everything a connection task needs.
pub(super) struct Connection {
    pub router: Router,
    pub peer: SocketAddr,
    pub limits: Limits,
    pub builder: Arc<Builder<TokioExecutor>>,
    /// Graceful shutdown: finish the requests in progress, then close.
    pub stop: CancellationToken,
    /// The grace is over: close now.
    pub kill: CancellationToken,
    /// This connection's place under `server.max_connections`, given back
    /// when the task ends.
    pub _permit: OwnedSemaphorePermit,
}

impl Connection {
    pub async fn run(self, stream: TcpStream) {
        let watch = Watch::new(self.limits.header_timeout, self.limits.idle_timeout);
        let io = TokioIo::new(Watched::new(stream, watch.clone()));
        let (router, peer, body_timeout) = (self.router, self.peer, self.limits.body_timeout);
        let service_watch = watch.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(
                req,
                router.clone(),
                peer,
                body_timeout,
                service_watch.clone(),
            )
        });
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    return;
                }
                why = watch.expired() => {
                    tracing::debug!(%peer, "closing connection: {why:?} timeout");
                    return;
                }
                _ = self.stop.cancelled(), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                _ = self.kill.cancelled() => {
                    tracing::debug!(%peer, "closing connection: shutdown grace is over");
                    return;
                }
            }
        }
    }
}

/// One request: the peer address for the handlers, the body deadline, and
/// 408 when the deadline passed (see `body`).
async fn handle(
    req: Request<Incoming>,
    mut router: Router,
    peer: SocketAddr,
    body_timeout: std::time::Duration,
    watch: Arc<Watch>,
) -> Result<Response, Infallible> {
    let version = req.version();
    let _in_flight = watch.request_started(version);
    let timed_out = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = Body::new(TimedBody::new(body, body_timeout, timed_out.clone()));
    // Router is always ready (poll_ready is a no-op), so call it directly.
    let response = router.call(Request::from_parts(parts, body)).await?;
    if !timed_out.load(Ordering::Acquire) {
        return Ok(response);
    }
    let mut response = super::answer::body_timeout(body_timeout);
    if version < http::Version::HTTP_2 {
        // The rest of the body may still come: the connection cannot carry
        // another request. (HTTP/2 ends only the stream.)
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}
