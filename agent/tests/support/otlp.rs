//! OTLP receivers started inside the tests, gRPC on tonic and
//! HTTP/protobuf on hyper, both decoding with opentelemetry-proto, both
//! taking gzip, and over TLS that asks for a client certificate if told
//! to; and lookups in the requests they receive.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::{KeyValue, any_value},
    metrics::v1::{
        ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, metric::Data, number_data_point,
    },
};
use prost::Message as _;

use crate::support::free_port;

/// One request as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub request: ExportMetricsServiceRequest,
    /// HTTP: the body's length as sent (compressed or not).
    pub body_bytes: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn protocol(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http/protobuf",
        }
    }
}

/// The receiver's side of mutual TLS: its certificate and key, and the CA
/// whose certificate a client must show (PEM).
#[derive(Clone)]
pub struct ServerTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Vec<u8>,
}

/// An OTLP receiver on the loopback, on a runtime of its own so that it
/// can be stopped and started again on the same port.
pub struct Receiver {
    transport: Transport,
    tls: Option<ServerTls>,
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
    sink: mpsc::Sender<Received>,
    received: mpsc::Receiver<Received>,
    /// Everything received so far.
    pub log: Vec<Received>,
}

impl Receiver {
    pub fn start(transport: Transport) -> Receiver {
        Receiver::start_with(transport, None)
    }

    /// A receiver over TLS, if `tls`, that only takes clients whose
    /// certificate its CA signed.
    pub fn start_with(transport: Transport, tls: Option<ServerTls>) -> Receiver {
        let (sink, received) = mpsc::channel();
        let mut receiver =
            Receiver { transport, tls, port: free_port(), runtime: None, sink, received, log: Vec::new() };
        receiver.restart();
        receiver
    }

    /// The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // Let the port go before anyone tries it again.
        thread::sleep(Duration::from_millis(100));
    }

    pub fn restart(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).expect("bind the receiver");
        let sink = self.sink.clone();
        match self.transport {
            Transport::Grpc => runtime.spawn(serve_grpc(listener, sink, self.tls.clone())),
            Transport::Http => runtime.spawn(serve_http(listener, sink, self.tls.clone())),
        };
        self.runtime = Some(runtime);
    }

    /// Waits up to `timeout` for a request that `wanted` accepts, logging
    /// every request received meanwhile.
    pub fn wait_for(&mut self, timeout: Duration, wanted: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.received.recv_timeout(left) {
                Ok(received) => {
                    self.log.push(received.clone());
                    if wanted(&received) {
                        return received;
                    }
                }
                Err(_) => panic!("no wanted request within {timeout:?}; got {} request(s)", self.log.len()),
            }
        }
    }

    /// Every request that arrives within `period`.
    pub fn drain(&mut self, period: Duration) -> Vec<Received> {
        let deadline = Instant::now() + period;
        let mut got = Vec::new();
        while let Ok(received) = self.received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.log.push(received.clone());
            got.push(received);
        }
        got
    }
}

struct GrpcSink(mpsc::Sender<Received>);

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
            .collect();
        let received = Received { path: String::new(), headers, request: request.into_inner(), body_bytes: 0 };
        let _ = self.0.send(received);
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

async fn serve_grpc(listener: tokio::net::TcpListener, sink: mpsc::Sender<Received>, tls: Option<ServerTls>) {
    use tonic::{
        codec::CompressionEncoding,
        transport::{Certificate, Identity, ServerTlsConfig},
    };

    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert, &tls.key))
            .client_ca_root(Certificate::from_pem(&tls.client_ca));
        server = server.tls_config(config).expect("the receiver's TLS");
    }
    let service = MetricsServiceServer::new(GrpcSink(sink)).accept_compressed(CompressionEncoding::Gzip);
    server.serve_with_incoming(service, incoming).await.expect("the gRPC receiver runs");
}

/// A TLS acceptor that asks for a client certificate signed by `tls.client_ca`.
fn http_tls(tls: &ServerTls) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.client_ca) {
        roots.add(ca.expect("the test CA")).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let chain = CertificateDer::pem_slice_iter(&tls.cert).collect::<Result<Vec<_>, _>>().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_slice(&tls.key).unwrap())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve_http(listener: tokio::net::TcpListener, sink: mpsc::Sender<Received>, tls: Option<ServerTls>) {
    let sink = Arc::new(Mutex::new(sink));
    let acceptor = tls.as_ref().map(http_tls);
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let sink = sink.clone();
        match &acceptor {
            // A client without a certificate fails the handshake, and gets nothing.
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_http_connection(stream, sink).await;
                    }
                });
            }
            None => {
                tokio::spawn(serve_http_connection(stream, sink));
            }
        }
    }
}

async fn serve_http_connection<S>(stream: S, sink: Arc<Mutex<mpsc::Sender<Received>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Request, Response, body::Incoming, service::service_fn};

    let service = service_fn(move |request: Request<Incoming>| {
        let sink = sink.clone();
        async move {
            let path = request.uri().path().to_owned();
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
                .collect();
            let gzipped = request.headers().get("content-encoding").is_some_and(|v| v == "gzip");
            let body = request.into_body().collect().await?.to_bytes();
            let body_bytes = body.len();
            let body = if gzipped { gunzip(&body) } else { body.to_vec() };
            let request = ExportMetricsServiceRequest::decode(body.as_slice()).expect("a protobuf request");
            let _ = sink.lock().unwrap().send(Received { path, headers, request, body_bytes });
            let reply = ExportMetricsServiceResponse { partial_success: None }.encode_to_vec();
            Ok::<_, hyper::Error>(
                Response::builder()
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(hyper::body::Bytes::from(reply)))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    use std::io::Read as _;

    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut decoded).expect("a gzip body");
    decoded
}

/// The metric `name` in `request`.
pub fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).find(|m| m.name == name)
}

/// Every metric in `request`.
pub fn metrics(request: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics)
}

/// An attribute value as text.
pub fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn matches(attributes: &[KeyValue], wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(key, value)| text(attributes, key).as_deref() == Some(*value))
}

/// The counter or gauge point of `name` whose attributes include `wanted`.
pub fn number<'a>(
    request: &'a ExportMetricsServiceRequest,
    name: &str,
    wanted: &[(&str, &str)],
) -> Option<&'a NumberDataPoint> {
    let points = match metric(request, name)?.data.as_ref()? {
        Data::Sum(sum) => &sum.data_points,
        Data::Gauge(gauge) => &gauge.data_points,
        _ => return None,
    };
    points.iter().find(|p| matches(&p.attributes, wanted))
}

/// Its value as f64 (integers converted).
pub fn value(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(x)) => x,
        None => f64::NAN,
    }
}

/// The exponential histogram point of `name` whose attributes include `wanted`.
pub fn exponential<'a>(
    request: &'a ExportMetricsServiceRequest,
    name: &str,
    wanted: &[(&str, &str)],
) -> Option<&'a ExponentialHistogramDataPoint> {
    let Data::ExponentialHistogram(histogram) = metric(request, name)?.data.as_ref()? else { return None };
    histogram.data_points.iter().find(|p| matches(&p.attributes, wanted))
}

/// The histogram point of `name` whose attributes include `wanted`.
pub fn histogram<'a>(
    request: &'a ExportMetricsServiceRequest,
    name: &str,
    wanted: &[(&str, &str)],
) -> Option<&'a HistogramDataPoint> {
    let Data::Histogram(histogram) = metric(request, name)?.data.as_ref()? else { return None };
    histogram.data_points.iter().find(|p| matches(&p.attributes, wanted))
}
