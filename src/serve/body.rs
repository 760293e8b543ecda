//! `server.body_timeout`: a request body with a deadline.
//!
//! The deadline is put on the body rather than on the handler, because a
//! handler may rightly take long after the body arrived (the queue write),
//! and on the body rather than in each handler, because several routes read
//! bodies in different ways (`read_body`, axum's `Json`). A body still
//! incomplete at the deadline fails its next read with
//! [`BodyTimedOut`] and raises a flag the connection's service checks to
//! answer 408, whatever the handler made of the failed read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::answer::BodyTimedOut;

/// A request body that fails once `deadline` passed before its end.
pub(super) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// `server.body_timeout`, for the error message.
    after: Duration,
    /// Created at the first read that has to wait: a body already in the
    /// buffer (the common case) costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set when the deadline passed (read by the connection's service).
    timed_out: Arc<AtomicBool>,
}

impl TimedBody {
    /// `inner` must be complete within `after` from now.
    pub fn new(inner: Incoming, after: Duration, timed_out: Arc<AtomicBool>) -> TimedBody {
        TimedBody {
            inner,
            deadline: Instant::now() + after,
            after,
            sleep: None,
            timed_out,
        }
    }

    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.timed_out.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyError::from(BodyTimedOut {
            after: self.after,
        }))))
    }
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        // Checked before reading too, so a client dripping a byte at a time
        // (every read ready) still meets the deadline; but not once the
        // whole body is in, which a late final poll must not turn into 408.
        if let (Some(sleep), false) = (this.sleep.as_mut(), this.inner.is_end_stream()) {
            if sleep.as_mut().poll(cx).is_ready() {
                return this.expire();
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(BodyError::from))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return this.expire();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
