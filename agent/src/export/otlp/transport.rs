//! The two transports, gRPC (tonic) and HTTP/protobuf (reqwest), and which
//! of their failures the OTLP specification says to retry. Compression and
//! TLS are the libraries' own, as opentelemetry-otlp uses them: tonic's
//! gzip (its `gzip-tonic` feature) and `ClientTlsConfig`, reqwest's root
//! certificates and identity, and flate2 for HTTP bodies (its `gzip-http`).

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics_service_client::MetricsServiceClient,
};
use prost::Message as _;

use super::settings::{ClientTls, Compression, OtlpConfig, Protocol};
use crate::error_chain::error_chain;

/// Why a request was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver could not be reached or asked to retry later.
    #[error("{endpoint}: {message}")]
    Unavailable { endpoint: String, message: String },
    /// The receiver refused the request: sending it again would not help.
    #[error("{endpoint} refused the request: {message}")]
    Refused { endpoint: String, message: String },
}

/// Errors building a transport.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP {protocol} client for {endpoint}: {message}")]
pub struct ClientError {
    protocol: &'static str,
    endpoint: String,
    message: String,
}

/// Sends requests to one endpoint.
pub struct Sender {
    endpoint: String,
    transport: Transport,
}

/// One of the two transports; gRPC's client and request metadata.
enum Transport {
    Grpc(Box<(MetricsServiceClient<tonic::transport::Channel>, tonic::metadata::MetadataMap)>),
    Http(reqwest::Client, Compression),
}

const USER_AGENT: &str = concat!("batchwatch/", env!("CARGO_PKG_VERSION"));

impl Sender {
    /// Sets up the transport; it connects on first use and reconnects by
    /// itself. Must run inside the tokio runtime (gRPC spawns its worker).
    pub fn new(config: &OtlpConfig) -> Result<Sender, ClientError> {
        let transport = match config.protocol {
            Protocol::Grpc => grpc(config)?,
            Protocol::HttpProtobuf => http(config)?,
        };
        Ok(Sender { endpoint: config.endpoint.clone(), transport })
    }

    /// Sends `request` once; returns how many points the receiver refused.
    pub async fn send(&self, request: &ExportMetricsServiceRequest) -> Result<u64, SendError> {
        let endpoint = &self.endpoint;
        let response = match &self.transport {
            Transport::Grpc(grpc) => {
                let (client, metadata) = grpc.as_ref();
                let mut call = tonic::Request::new(request.clone());
                *call.metadata_mut() = metadata.clone();
                client.clone().export(call).await.map(tonic::Response::into_inner).map_err(|status| {
                    let message = format!("gRPC {:?}: {}", status.code(), status.message());
                    grpc_error(status.code(), endpoint, message)
                })?
            }
            Transport::Http(client, compression) => post(client, endpoint, request, *compression).await?,
        };
        Ok(response.partial_success.map_or(0, |partial| partial.rejected_data_points.max(0) as u64))
    }
}

fn grpc(config: &OtlpConfig) -> Result<Transport, ClientError> {
    let fail = |message: String| ClientError { protocol: "gRPC", endpoint: config.endpoint.clone(), message };
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
        .map_err(|error| fail(error.to_string()))?
        .user_agent(USER_AGENT)
        .map_err(|error| fail(error.to_string()))?
        .timeout(config.timeout)
        .connect_timeout(config.timeout);
    if config.endpoint.starts_with("https:") {
        endpoint = endpoint.tls_config(grpc_tls(&config.tls)).map_err(|error| fail(error.to_string()))?;
    }
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &config.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).map_err(|error| fail(error.to_string()))?;
        metadata.insert(key, value.parse().map_err(|_| fail(format!("header {name} is not valid metadata")))?);
    }
    let mut client = MetricsServiceClient::new(endpoint.connect_lazy());
    if config.compression == Compression::Gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    Ok(Transport::Grpc(Box::new((client, metadata))))
}

/// The system's roots, the CA of `tls` and its client identity.
fn grpc_tls(tls: &ClientTls) -> tonic::transport::ClientTlsConfig {
    let mut config = tonic::transport::ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    config
}

fn http(config: &OtlpConfig) -> Result<Transport, ClientError> {
    let fail = |message: String| ClientError { protocol: "HTTP", endpoint: config.endpoint.clone(), message };
    // rustls needs a crypto provider; the process may have installed one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &config.headers {
        let value = value.parse().map_err(|_| fail(format!("header {name} is not a valid value")))?;
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|error| fail(error.to_string()))?,
            value,
        );
    }
    headers.insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/x-protobuf"));
    if config.compression == Compression::Gzip {
        headers.insert(reqwest::header::CONTENT_ENCODING, reqwest::header::HeaderValue::from_static("gzip"));
    }
    let mut builder =
        reqwest::Client::builder().user_agent(USER_AGENT).default_headers(headers).timeout(config.timeout);
    if let Some(ca) = &config.tls.ca {
        for certificate in reqwest::Certificate::from_pem_bundle(ca).map_err(|error| fail(error.to_string()))? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some((cert, key)) = &config.tls.identity {
        let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
        builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(|error| fail(error.to_string()))?);
    }
    let client = builder.build().map_err(|error| fail(error.to_string()))?;
    Ok(Transport::Http(client, config.compression))
}

/// gRPC codes the OTLP specification says to retry.
fn grpc_error(code: tonic::Code, endpoint: &str, message: String) -> SendError {
    use tonic::Code::*;
    let endpoint = endpoint.to_owned();
    match code {
        Cancelled | DeadlineExceeded | ResourceExhausted | Aborted | OutOfRange | Unavailable | DataLoss => {
            SendError::Unavailable { endpoint, message }
        }
        _ => SendError::Refused { endpoint, message },
    }
}

async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    request: &ExportMetricsServiceRequest,
    compression: Compression,
) -> Result<ExportMetricsServiceResponse, SendError> {
    let unavailable = |message: String| SendError::Unavailable { endpoint: endpoint.to_owned(), message };
    let body = match compression {
        Compression::None => request.encode_to_vec(),
        Compression::Gzip => gzip(&request.encode_to_vec()),
    };
    let response = client.post(endpoint).body(body).send().await.map_err(|error| unavailable(error_chain(&error)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|error| unavailable(error_chain(&error)))?;
    if status.is_success() {
        // An empty body is an empty response.
        return Ok(ExportMetricsServiceResponse::decode(body).unwrap_or_default());
    }
    let message = format!("HTTP {status}");
    // The statuses the OTLP specification says to retry.
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(unavailable(message)),
        _ => Err(SendError::Refused { endpoint: endpoint.to_owned(), message }),
    }
}

/// `bytes` gzipped (writing to memory cannot fail).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;

    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}
