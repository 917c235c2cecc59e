//! Accepting the HTTP endpoint's connections so that no client can exhaust
//! the agent: what [`prometheus`](super::prometheus) serves runs behind it.
//!
//! - A client must send a request's headers within `header_timeout` of
//!   connecting or of its last response (hyper's header read timeout, which
//!   also covers idle keep-alive connections); then it is disconnected.
//! - A connection lives at most `connection_lifetime`; then the response in
//!   flight gets one more `header_timeout` to be sent, and the connection is
//!   cut. A client that asks for `/metrics` and never reads the answer would
//!   otherwise hold the whole response (megabytes at `export.max_series`)
//!   for as long as it likes: the header timeout does not run while a
//!   response is being written.
//! - At most `max_connections` are held at once, and `max_connections_per_client`
//!   from one address: a connection beyond either is closed at once, so one
//!   client holding many half-sent requests leaves room for the kubelet's
//!   probes and the scraper, and the memory held stays bounded.
//! - A failing `accept` (EMFILE, ENFILE, ENOBUFS: the pending connection
//!   stays queued, so the next call fails at once again) is retried after a
//!   backoff, not in a loop that would starve the OTLP sender and the signal
//!   handlers on the same single-threaded runtime.
//! - With TLS ([`tls`](super::tls)), the handshake must end within
//!   `header_timeout` too.
//!
//! Every connection refused or cut is counted in [`EndpointHealth`], which
//! each collection exports.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
    service::Service,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::EndpointLimits;

/// The endpoint's connections and its refusals, counted since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Connections held now, and at most.
    pub open: u64,
    pub limit: u64,
    /// Connections closed at once: the endpoint held its maximum, or the
    /// client its own.
    pub connection_limit: u64,
    pub client_limit: u64,
    /// Connections closed because a request's headers did not come in time.
    pub header_timeout: u64,
    /// Connections cut at the end of their lifetime with a response still
    /// unsent: a client that does not read.
    pub response_stalled: u64,
    /// TLS handshakes that failed or took longer than the header timeout.
    pub tls_handshake: u64,
    /// `accept` calls that failed.
    pub accept_failed: u64,
}

/// Admits, serves and counts the endpoint's connections.
pub struct Endpoint {
    limits: EndpointLimits,
    open: Mutex<Open>,
    connection_limit: AtomicU64,
    client_limit: AtomicU64,
    header_timeout: AtomicU64,
    response_stalled: AtomicU64,
    tls_handshake: AtomicU64,
    accept_failed: AtomicU64,
    /// TLS, or plain HTTP.
    tls: Option<TlsAcceptor>,
}

/// Connections held, all together and by client address.
#[derive(Default)]
struct Open {
    total: u32,
    by_client: HashMap<IpAddr, u32>,
}

/// A connection's place among those held, given back when it is dropped.
struct Admitted {
    endpoint: Arc<Endpoint>,
    client: IpAddr,
}

impl Endpoint {
    pub fn new(limits: EndpointLimits, tls: Option<TlsAcceptor>) -> Endpoint {
        Endpoint {
            limits,
            open: Mutex::default(),
            connection_limit: AtomicU64::new(0),
            client_limit: AtomicU64::new(0),
            header_timeout: AtomicU64::new(0),
            response_stalled: AtomicU64::new(0),
            tls_handshake: AtomicU64::new(0),
            accept_failed: AtomicU64::new(0),
            tls,
        }
    }

    pub fn health(&self) -> EndpointHealth {
        EndpointHealth {
            open: u64::from(self.open().total),
            limit: u64::from(self.limits.max_connections),
            connection_limit: self.connection_limit.load(Relaxed),
            client_limit: self.client_limit.load(Relaxed),
            header_timeout: self.header_timeout.load(Relaxed),
            response_stalled: self.response_stalled.load(Relaxed),
            tls_handshake: self.tls_handshake.load(Relaxed),
            accept_failed: self.accept_failed.load(Relaxed),
        }
    }

    /// Accepts connections on `listener` until the runtime stops, serving
    /// each admitted one over HTTP/1 with a service from `service`.
    pub async fn serve<F, S>(self: Arc<Self>, listener: TcpListener, service: F)
    where
        F: Fn() -> S,
        S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
            + Send
            + 'static,
    {
        let mut failures = 0;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => {
                    failures = 0;
                    accepted
                }
                Err(error) => {
                    self.accept_failed.fetch_add(1, Relaxed);
                    if failures == 0 {
                        tracing::warn!("the Prometheus endpoint cannot accept connections, backing off: {error}");
                    }
                    failures += 1;
                    tokio::time::sleep(accept_backoff(failures)).await;
                    continue;
                }
            };
            // Dropping the stream closes the connection at once.
            let Some(admitted) = self.admit(peer.ip()) else { continue };
            let (limits, tls, service) = (self.limits, self.tls.clone(), service());
            tokio::spawn(async move {
                let ended = match tls {
                    None => http(TokioIo::new(stream), service, limits).await,
                    // The handshake is held to the header timeout too.
                    Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => http(TokioIo::new(stream), service, limits).await,
                        Ok(Err(_)) | Err(_) => Ended::TlsHandshake,
                    },
                };
                admitted.ended(ended);
            });
        }
    }

    /// A place for a connection from `client`, or `None` (counted) when
    /// the endpoint or the client holds its maximum.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Admitted> {
        let mut open = self.open();
        if open.total >= self.limits.max_connections {
            self.connection_limit.fetch_add(1, Relaxed);
            return None;
        }
        let held = open.by_client.entry(client).or_default();
        if *held >= self.limits.max_connections_per_client {
            self.client_limit.fetch_add(1, Relaxed);
            return None;
        }
        *held += 1;
        open.total += 1;
        Some(Admitted { endpoint: self.clone(), client })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a connection ended.
enum Ended {
    /// By the client, or at the end of its lifetime with nothing in flight.
    Closed,
    HeaderTimeout,
    ResponseStalled,
    TlsHandshake,
}

/// Serves one connection over HTTP/1 until it ends or its lifetime does.
async fn http<I, S>(io: I, service: S, limits: EndpointLimits) -> Ended
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut connection = std::pin::pin!(builder.serve_connection(io, service));
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = tokio::time::sleep(limits.connection_lifetime) => {
            // At the end of its life, the response in flight may still be
            // sent, within a header timeout; then the connection is cut.
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.header_timeout, connection).await {
                Ok(ended) => ended,
                Err(_) => return Ended::ResponseStalled,
            }
        }
    };
    match ended {
        Err(error) if error.is_timeout() => Ended::HeaderTimeout,
        // Other errors are the client's going away mid-request: no concern of ours.
        _ => Ended::Closed,
    }
}

impl Admitted {
    /// Counts how the connection ended, and gives its place back.
    fn ended(self, ended: Ended) {
        let counter = match ended {
            Ended::Closed => return,
            Ended::HeaderTimeout => &self.endpoint.header_timeout,
            Ended::ResponseStalled => &self.endpoint.response_stalled,
            Ended::TlsHandshake => &self.endpoint.tls_handshake,
        };
        counter.fetch_add(1, Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.endpoint.open();
        open.total -= 1;
        if let Some(held) = open.by_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// 10 ms, doubling with each failure in a row up to one second: failures
/// that clear by themselves (a connection reset while queued) cost little,
/// and a lasting one (EMFILE) costs one call a second.
fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10).saturating_mul(1 << failures.saturating_sub(1).min(7)).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn endpoint(max_connections: u32, max_connections_per_client: u32) -> Arc<Endpoint> {
        let limits = EndpointLimits {
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_connections,
            max_connections_per_client,
        };
        Arc::new(Endpoint::new(limits, None))
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_client_over_its_share_is_refused_and_others_still_admitted() {
        let endpoint = endpoint(4, 2);
        let held: Vec<_> = [A, A, A, B, B].into_iter().filter_map(|client| endpoint.admit(client)).collect();
        assert_eq!(held.len(), 4);
        let health = endpoint.health();
        assert_eq!((health.open, health.limit, health.client_limit, health.connection_limit), (4, 4, 1, 0));
        // The endpoint is full: anyone is refused, and counted apart.
        assert!(endpoint.admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))).is_none());
        assert_eq!(endpoint.health().connection_limit, 1);
        drop(held);
        assert_eq!(endpoint.health().open, 0);
        assert!(endpoint.open().by_client.is_empty(), "clients gone leave no entry behind");
    }

    #[test]
    fn accept_backoff_doubles_to_a_second() {
        let backoffs: Vec<_> = (1..=9).map(|n| accept_backoff(n).as_millis()).collect();
        assert_eq!(backoffs, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
