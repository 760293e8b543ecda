//! The watchdog of one connection: `server.header_timeout` and
//! `server.idle_timeout`.
//!
//! A connection is always in one of three phases:
//! - `Head`: waiting for a request's headers, since accept or since the
//!   first byte that followed an idle period: closed after header_timeout;
//! - `Busy`: at least one request is being handled: no deadline here (the
//!   body has its own, see `body`; the handler's time is bounded by
//!   shutdown);
//! - `Idle`: no request in progress since the last one finished: closed
//!   after idle_timeout.
//!
//! The socket wrapper [`Watched`] reports bytes read (`Idle` → `Head`), the
//! service reports requests started and finished ([`InFlight`]). On HTTP/2
//! a byte read while idle may be a PING or a window update, not a request,
//! so there only a new stream ends `Idle`.
//!
//! Those reports only write the phase; nothing is woken. The watchdog looks
//! by itself, at the phase's deadline or every [`Watch::check_every`]
//! (a tenth of the shorter timeout, at most 1 s), whichever comes first, so
//! a deadline that moves earlier is seen within that period. Waking the
//! connection task on every change cost two extra polls of the whole
//! connection per request (`bench/daemon-ir`), where the periodic look costs
//! one wake per period per connection, whatever the request rate.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Why the watchdog closed a connection (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// Request headers incomplete after header_timeout.
    Header,
    /// No request for idle_timeout.
    Idle,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head(Instant),
    Busy,
    Idle(Instant),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Requests being handled (several at once on HTTP/2).
    in_flight: usize,
    /// The connection speaks HTTP/2 (seen on its first request).
    h2: bool,
}

/// Shared by the socket wrapper, the service and the connection task.
#[derive(Debug)]
pub(super) struct Watch {
    state: Mutex<State>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Watch {
    /// A connection just accepted: its first headers are due.
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Watch> {
        Arc::new(Watch {
            state: Mutex::new(State {
                phase: Phase::Head(Instant::now()),
                in_flight: 0,
                h2: false,
            }),
            header_timeout,
            idle_timeout,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields updated in one statement each, so
        // a panic elsewhere while holding the lock cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: after an idle period they start the next request's
    /// headers (HTTP/1 only, see the module header).
    fn bytes_read(&self) {
        let mut s = self.state();
        if let (Phase::Idle(_), false) = (s.phase, s.h2) {
            s.phase = Phase::Head(Instant::now());
        }
    }

    /// A request's headers are complete; the returned guard ends it.
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.phase = Phase::Busy;
        s.h2 |= version == http::Version::HTTP_2;
        InFlight(self.clone())
    }

    /// How often the watchdog looks even before a deadline: a tenth of the
    /// shorter timeout, between 20 ms and 1 s.
    fn check_every(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 10)
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// Resolves when the current phase's deadline passed (never while busy).
    pub async fn expired(&self) -> Expired {
        loop {
            let now = Instant::now();
            let next = match self.due(now) {
                Ok(why) => return why,
                Err(Some(at)) => at.min(now + self.check_every()),
                Err(None) => now + self.check_every(),
            };
            tokio::time::sleep_until(next).await;
        }
    }

    /// Why the connection is due at `now`, or else the current deadline
    /// (none while busy).
    fn due(&self, now: Instant) -> Result<Expired, Option<Instant>> {
        let (at, why) = match self.state().phase {
            Phase::Head(since) => (since + self.header_timeout, Expired::Header),
            Phase::Idle(since) => (since + self.idle_timeout, Expired::Idle),
            Phase::Busy => return Err(None),
        };
        if now >= at { Ok(why) } else { Err(Some(at)) }
    }
}

/// One request in progress; dropping it (the response is ready, or the
/// connection went away) may make the connection idle.
pub(super) struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle(Instant::now());
        }
    }
}

/// The socket, reporting reads to the watchdog.
pub(super) struct Watched<T> {
    inner: T,
    watch: Arc<Watch>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, watch: Arc<Watch>) -> Watched<T> {
        Watched { inner, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.bytes_read();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // tokio's paused clock needs the `test-util` feature, not in the tree:
    // these run on the real clock with short timeouts. A deadline never
    // fires early, so the lower bounds are exact; the upper ones are slack.
    const HEADER: Duration = Duration::from_millis(200);
    const IDLE: Duration = Duration::from_millis(500);
    const SLACK: Duration = Duration::from_secs(2);

    async fn expires(w: &Watch, from: Instant, want: Expired, after: Duration) {
        assert_eq!(w.expired().await, want);
        let took = from.elapsed();
        assert!(
            took >= after && took < after + SLACK,
            "{want:?} after {took:?}"
        );
    }

    #[tokio::test]
    async fn headers_are_due_header_timeout_after_accept() {
        let start = Instant::now();
        let w = Watch::new(HEADER, IDLE);
        expires(&w, start, Expired::Header, HEADER).await;
    }

    #[tokio::test]
    async fn a_request_in_progress_never_expires_and_idle_follows_it() {
        let w = Watch::new(HEADER, IDLE);
        let req = w.request_started(http::Version::HTTP_11);
        let waited = tokio::time::timeout(IDLE * 2, w.expired()).await;
        assert!(waited.is_err(), "a busy connection expired");
        let done = Instant::now();
        drop(req);
        expires(&w, done, Expired::Idle, IDLE).await;
    }

    #[tokio::test]
    async fn a_byte_after_idle_starts_the_header_clock_on_http1_only() {
        let w = Watch::new(HEADER, IDLE);
        drop(w.request_started(http::Version::HTTP_11));
        tokio::time::sleep(HEADER).await;
        let first_byte = Instant::now();
        w.bytes_read();
        expires(&w, first_byte, Expired::Header, HEADER).await;

        let w = Watch::new(HEADER, IDLE);
        let idle_since = Instant::now();
        drop(w.request_started(http::Version::HTTP_2));
        w.bytes_read(); // a PING: still idle
        expires(&w, idle_since, Expired::Idle, IDLE).await;
    }
}
