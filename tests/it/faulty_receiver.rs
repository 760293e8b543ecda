//! A receiver on loopback that misbehaves at the transport level, for the
//! fault tests in `faults_receiver.rs`. Unlike `support::Receiver` (which
//! scripts HTTP answers), it can:
//! - **reset** chosen connections: accept the TCP connection and close it at
//!   once with `SO_LINGER 0`, so the peer gets an RST before a byte of its
//!   request was read;
//! - **refuse**: close its listening socket (connects get `ECONNREFUSED`)
//!   and later bind the same port again;
//! - **hang** chosen requests: read the request, then answer only after
//!   [`HANG`], far past any test `timeout`.
//!
//! It records every request its HTTP handler saw (an [`Arrival`]), in
//! order, so a test can tell "the daemon retried a request the receiver
//! never read" (no duplicate allowed) from "the receiver read it but did not
//! answer in time" (at-least-once allows a duplicate).
//!
//! With `close_each`, every answer carries `Connection: close`, so the
//! daemon dials a new connection for every attempt: connection rules then
//! apply per attempt, and a closed listener really refuses the next
//! attempt instead of the daemon reusing a pooled keep-alive connection.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a hung request waits before it is answered.
pub const HANG: Duration = Duration::from_secs(5);

/// A rule by index (of the connection, or of the arrival): true = misbehave.
pub type Rule = Box<dyn Fn(usize) -> bool + Send + Sync>;

/// What the receiver does; every rule defaults to "behave".
pub struct Behaviour {
    /// Reset the connection with this accept index (0-based, all accepted
    /// connections counted, reset ones included).
    pub reset: Rule,
    /// Hang the request with this arrival index (0-based).
    pub hang: Rule,
    /// Answer with `Connection: close` (one connection per attempt).
    pub close_each: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            reset: Box::new(|_| false),
            hang: Box::new(|_| false),
            close_each: false,
        }
    }
}

/// One request the receiver's HTTP handler read.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub event_id: String,
    pub delivery_id: String,
    /// `X-Hookyard-Attempt`.
    pub attempt: u32,
    /// Answered only after [`HANG`], so the daemon gave up on it first.
    pub hung: bool,
}

struct Faults {
    behaviour: Behaviour,
    /// Connections accepted so far, reset ones included.
    accepted: AtomicUsize,
    /// Connections reset so far.
    resets: AtomicUsize,
    arrivals: Mutex<Vec<Arrival>>,
    /// What the test asks for: listening (true) or refusing (false).
    want_open: watch::Sender<bool>,
    /// What the accept loop has done, so the test can wait for it.
    is_open: watch::Sender<bool>,
}

/// A handle to the running receiver.
pub struct FaultyReceiver {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
}

impl FaultyReceiver {
    pub async fn start(behaviour: Behaviour) -> FaultyReceiver {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let faults = Arc::new(Faults {
            behaviour,
            accepted: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
            arrivals: Mutex::new(Vec::new()),
            want_open: watch::Sender::new(true),
            is_open: watch::Sender::new(true),
        });
        let listener = FaultListener {
            addr,
            inner: Some(inner),
            faults: faults.clone(),
        };
        let app = Router::new().fallback(answer).with_state(faults.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultyReceiver { addr, faults }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Close (`false`: connects are refused) or reopen the listening
    /// socket, and wait until that is done.
    pub async fn set_open(&self, open: bool) {
        let mut done = self.faults.is_open.subscribe();
        self.faults.want_open.send_replace(open);
        tokio::time::timeout(Duration::from_secs(5), done.wait_for(|v| *v == open))
            .await
            .expect("the receiver's listener changed state within 5s")
            .unwrap();
    }

    /// Every request read so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.faults.arrivals.lock().unwrap().clone()
    }

    /// Event ids answered 200 at once (acknowledged to the daemon).
    pub fn acked(&self) -> HashSet<String> {
        self.arrivals()
            .into_iter()
            .filter(|a| !a.hung)
            .map(|a| a.event_id)
            .collect()
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.faults.resets.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (reset ones included).
    pub fn accepted(&self) -> usize {
        self.faults.accepted.load(Ordering::SeqCst)
    }
}

/// The accept side: applies the reset rule and the open/closed state
/// before axum sees a connection.
struct FaultListener {
    addr: SocketAddr,
    /// `None` while closed: the port then refuses connections.
    inner: Option<TcpListener>,
    faults: Arc<Faults>,
}

impl axum::serve::Listener for FaultListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut want = self.faults.want_open.subscribe();
        loop {
            if !*want.borrow_and_update() {
                // Dropping the socket closes the port; connections still in
                // its backlog are reset by the kernel, unread.
                self.inner = None;
                self.faults.is_open.send_replace(false);
                let _ = want.changed().await;
                continue;
            }
            if self.inner.is_none() {
                self.inner = Some(rebind(self.addr).await);
            }
            self.faults.is_open.send_replace(true);
            let Some(inner) = self.inner.as_ref() else {
                continue;
            };
            tokio::select! {
                r = inner.accept() => match r {
                    Ok((stream, peer)) => {
                        let i = self.faults.accepted.fetch_add(1, Ordering::SeqCst);
                        if (self.faults.behaviour.reset)(i) {
                            // RST on drop, before anything was read.
                            stream.set_zero_linger().unwrap();
                            drop(stream);
                            self.faults.resets.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        return (stream, peer);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                _ = want.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Bind the receiver's port again (tokio sets `SO_REUSEADDR`; retried in
/// case the kernel lent the free port to an outgoing connection meanwhile).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not bind {addr} again within 2s");
}

/// Record the request, hang if the rule says so, then answer 200.
async fn answer(State(f): State<Arc<Faults>>, headers: HeaderMap, _body: Bytes) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let hung = {
        let mut arrivals = f.arrivals.lock().unwrap();
        let hung = (f.behaviour.hang)(arrivals.len());
        arrivals.push(Arrival {
            event_id: text("x-hookyard-event-id"),
            delivery_id: text("x-hookyard-delivery-id"),
            attempt: text("x-hookyard-attempt").parse().unwrap_or(0),
            hung,
        });
        hung
    };
    if hung {
        tokio::time::sleep(HANG).await;
    }
    let mut resp = (StatusCode::OK, "ok").into_response();
    if f.behaviour.close_each {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}
