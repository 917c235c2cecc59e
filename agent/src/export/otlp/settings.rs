//! Where and how to send: the `export` config keys, then the standard
//! `OTEL_*` variables, as the OpenTelemetry specification orders them, each
//! error naming the key or variable and what it allows.

use std::{fmt, time::Duration};

use opentelemetry_otlp::{
    OTEL_EXPORTER_OTLP_COMPRESSION, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TIMEOUT,
};
use opentelemetry_sdk::metrics::Temporality;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use crate::config::{ExportConfig, Histograms, describe_key};

/// Which exporters `OTEL_METRICS_EXPORTER` asks for.
const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// The specification's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    pub protocol: Protocol,
    /// The full URL: for HTTP, with its path (`/v1/metrics`).
    pub endpoint: String,
    /// Lower-case names, decoded values.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub tls: ClientTls,
    /// Cumulative, or delta for counters and histograms (`delta`), or for
    /// histograms only (`lowmemory`): see [`super::temporality`].
    pub temporality: Temporality,
    /// Explicit or exponential histograms (`export.histograms`).
    pub histograms: Histograms,
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// TLS beyond the system's roots, from PEM files read at start: a bad file
/// fails before the probes load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    /// Certificates of the CAs to trust for the receiver, besides the system's.
    pub ca: Option<Vec<u8>>,
    /// The client's certificate chain and its private key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where a value came from, to name it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Key(&'static str),
    Var(&'static str),
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Key(key) => f.write_str(&describe_key(key)),
            Setting::Var(var) => f.write_str(var),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    /// An unknown protocol.
    #[error("{setting} is `{value}`: allowed grpc or http/protobuf")]
    Protocol { setting: Setting, value: String },
    /// An endpoint that is no http(s) URL.
    #[error("{setting} is `{value}`: {reason}; expected an http:// or https:// URL such as http://collector:4317")]
    Endpoint { setting: Setting, value: String, reason: String },
    /// A header entry that is not `key=value` with a valid name and value.
    #[error(
        "{setting} has a bad entry `{entry}`: {reason}; expected key1=value1,key2=value2 with percent-encoded values"
    )]
    Header { setting: Setting, entry: String, reason: String },
    /// A number of milliseconds out of range.
    #[error("{setting} is `{value}`: expected milliseconds, a whole number from {min} to {max}")]
    Millis { setting: Setting, value: String, min: u64, max: u64 },
    /// An unknown compression.
    #[error("{setting} is `{value}`: allowed gzip or none")]
    Compression { setting: Setting, value: String },
    /// An unknown temporality preference.
    #[error("{OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE} is `{value}`: allowed cumulative, delta or lowmemory")]
    Temporality { value: String },
    /// A certificate or key file that cannot be read or holds nothing usable.
    #[error("{setting}: cannot use {path}: {reason}")]
    PemFile { setting: Setting, path: String, reason: String },
    /// A client certificate without its key, or a key without its certificate.
    #[error("{setting} is set, and none of {missing} is: mutual TLS needs the client certificate and its key")]
    ClientPair { setting: Setting, missing: String },
    /// An unknown exporter name.
    #[error("{METRICS_EXPORTER} is `{value}`: allowed otlp, prometheus, none, comma-separated")]
    Exporter { value: String },
}

/// The environment, as a function (`std::env::var`, or a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment; empty values count as unset, as the
/// specification asks.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// Whether to export over OTLP: unless `OTEL_METRICS_EXPORTER` leaves
/// `otlp` out. (`prometheus` there only says "not OTLP": the endpoint is
/// `export.prometheus`.)
pub fn enabled(env: Env) -> Result<bool, OtlpConfigError> {
    let Some(value) = env(METRICS_EXPORTER) else { return Ok(true) };
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    if names.iter().any(|name| !["otlp", "prometheus", "none"].contains(name)) {
        return Err(OtlpConfigError::Exporter { value });
    }
    Ok(names.contains(&"otlp"))
}

/// The export interval: `export.export_interval`, else
/// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds), else 60 s.
pub fn interval(config: &ExportConfig, env: Env) -> Result<Duration, OtlpConfigError> {
    if let Some(interval) = config.export_interval {
        return Ok(interval);
    }
    match env(METRIC_EXPORT_INTERVAL) {
        Some(value) => millis(Setting::Var(METRIC_EXPORT_INTERVAL), &value, 100, 3_600_000),
        None => Ok(DEFAULT_INTERVAL),
    }
}

impl OtlpConfig {
    /// Each value from the config if it sets it, else the metrics-specific
    /// variable, else the generic one, else the specification's default.
    pub fn resolve(config: &ExportConfig, env: Env) -> Result<OtlpConfig, OtlpConfigError> {
        let protocol = match pick(&config.otlp_protocol, "export.otlp_protocol", &PROTOCOL_VARS, env) {
            None => Protocol::HttpProtobuf,
            Some((setting, value)) => match value.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => return Err(OtlpConfigError::Protocol { setting, value }),
            },
        };
        let headers = match pick(&config.otlp_headers, "export.otlp_headers", &HEADERS_VARS, env) {
            Some((setting, value)) => parse_headers(setting, &value)?,
            None => Vec::new(),
        };
        let timeout = match (config.otlp_timeout, first_set(&TIMEOUT_VARS, env)) {
            (Some(timeout), _) => timeout,
            (None, Some((setting, value))) => millis(setting, &value, 1, 600_000)?,
            (None, None) => DEFAULT_TIMEOUT,
        };
        let compression = match first_set(&COMPRESSION_VARS, env) {
            None => Compression::None,
            Some((setting, value)) => match value.trim() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => return Err(OtlpConfigError::Compression { setting, value }),
            },
        };
        let temporality = match env(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) {
            None => Temporality::Cumulative,
            Some(value) => value.trim().parse().map_err(|()| OtlpConfigError::Temporality { value })?,
        };
        let endpoint = endpoint(config, protocol, env)?;
        Ok(OtlpConfig {
            protocol,
            endpoint,
            headers,
            timeout,
            compression,
            tls: ClientTls::read(env)?,
            temporality,
            histograms: config.histograms,
        })
    }
}

impl ClientTls {
    /// The files the `OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE`,
    /// `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` variables name.
    fn read(env: Env) -> Result<ClientTls, OtlpConfigError> {
        let ca = first_set(&CERTIFICATE_VARS, env).map(|file| pem_file(file, Pem::Certificates)).transpose()?;
        let cert = first_set(&CLIENT_CERTIFICATE_VARS, env);
        let key = first_set(&CLIENT_KEY_VARS, env);
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((pem_file(cert, Pem::Certificates)?, pem_file(key, Pem::Key)?)),
            (Some((setting, _)), None) => {
                return Err(OtlpConfigError::ClientPair { setting, missing: CLIENT_KEY_VARS.join(", ") });
            }
            (None, Some((setting, _))) => {
                return Err(OtlpConfigError::ClientPair { setting, missing: CLIENT_CERTIFICATE_VARS.join(", ") });
            }
            (None, None) => None,
        };
        Ok(ClientTls { ca, identity })
    }
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    Key,
}

/// The PEM file `path`, if it holds at least one certificate, or a private key.
fn pem_file((setting, path): (Setting, String), wanted: Pem) -> Result<Vec<u8>, OtlpConfigError> {
    let bad = |reason: String| OtlpConfigError::PemFile { setting, path: path.clone(), reason };
    let pem = std::fs::read(path.trim()).map_err(|error| bad(error.to_string()))?;
    match wanted {
        Pem::Certificates => {
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| bad(error.to_string()))?;
            if certificates.is_empty() {
                return Err(bad("it holds no PEM certificate".to_owned()));
            }
        }
        Pem::Key => {
            PrivateKeyDer::from_pem_slice(&pem).map_err(|error| bad(format!("no PEM private key: {error}")))?;
        }
    }
    Ok(pem)
}

/// The TLS variables of the specification, which opentelemetry-otlp leaves
/// to its builders.
const CERTIFICATE_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"];
const CLIENT_CERTIFICATE_VARS: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"];
const CLIENT_KEY_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"];
const COMPRESSION_VARS: [&str; 2] = [OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION];

const PROTOCOL_VARS: [&str; 2] = [OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL];
const HEADERS_VARS: [&str; 2] = [OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_HEADERS];
const TIMEOUT_VARS: [&str; 2] = [OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT];

/// The config value if set, else the first variable that is.
fn pick(config: &Option<String>, key: &'static str, vars: &[&'static str], env: Env) -> Option<(Setting, String)> {
    match config {
        Some(value) => Some((Setting::Key(key), value.clone())),
        None => first_set(vars, env),
    }
}

fn first_set(vars: &[&'static str], env: Env) -> Option<(Setting, String)> {
    vars.iter().find_map(|&var| Some((Setting::Var(var), env(var)?)))
}

/// The endpoint URL. The config key and the metrics-specific variable are
/// used as they are; the generic variable is a base URL to which HTTP adds
/// `/v1/metrics`.
fn endpoint(config: &ExportConfig, protocol: Protocol, env: Env) -> Result<String, OtlpConfigError> {
    let specific = pick(&config.otlp_endpoint, "export.otlp_endpoint", &[OTEL_EXPORTER_OTLP_METRICS_ENDPOINT], env);
    if let Some((setting, url)) = specific {
        return checked_url(setting, url);
    }
    let Some((setting, base)) = first_set(&[OTEL_EXPORTER_OTLP_ENDPOINT], env) else {
        return Ok(match protocol {
            Protocol::Grpc => "http://localhost:4317".to_owned(),
            Protocol::HttpProtobuf => "http://localhost:4318/v1/metrics".to_owned(),
        });
    };
    let base = checked_url(setting, base)?;
    Ok(match protocol {
        Protocol::Grpc => base,
        Protocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
    })
}

/// `url`, trimmed, if it is an http or https URL with a host.
fn checked_url(setting: Setting, url: String) -> Result<String, OtlpConfigError> {
    let bad = |reason: String| OtlpConfigError::Endpoint { setting, value: url.clone(), reason };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|error| bad(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("scheme `{}` is not http or https", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host".to_owned()));
    }
    Ok(url.trim().to_owned())
}

/// `key1=value1,key2=value2`, values percent-encoded. Names and values
/// must be valid for both HTTP and gRPC metadata (visible ASCII).
fn parse_headers(setting: Setting, text: &str) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut headers = Vec::new();
    for entry in text.split(',').filter(|entry| !entry.trim().is_empty()) {
        let bad =
            |reason: &str| OtlpConfigError::Header { setting, entry: entry.to_owned(), reason: reason.to_owned() };
        let (name, value) = entry.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad("the name is not a valid header name"))?;
        let value = percent_decode(value.trim()).ok_or_else(|| bad("a `%` is not followed by two hex digits"))?;
        let valid = reqwest::header::HeaderValue::from_str(&value).is_ok_and(|v| v.to_str().is_ok());
        if !valid {
            return Err(bad("the value is not visible ASCII"));
        }
        headers.push((name.as_str().to_owned(), value));
    }
    Ok(headers)
}

/// Decodes `%XX` sequences; `None` if one is malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn millis(setting: Setting, value: &str, min: u64, max: u64) -> Result<Duration, OtlpConfigError> {
    match value.trim().parse::<u64>() {
        Ok(ms) if (min..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(OtlpConfigError::Millis { setting, value: value.to_owned(), min, max }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn resolve(config: &ExportConfig, vars: &[(&str, &str)]) -> Result<OtlpConfig, OtlpConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        OtlpConfig::resolve(config, &|name| vars.get(name).cloned())
    }

    fn defaults() -> ExportConfig {
        Config::default().export
    }

    #[test]
    fn defaults_follow_the_specification() {
        let config = resolve(&defaults(), &[]).unwrap();
        assert_eq!(config.protocol, Protocol::HttpProtobuf);
        assert_eq!(config.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert!(config.headers.is_empty());
    }

    #[test]
    fn http_adds_the_signal_path_to_the_generic_endpoint_only() {
        let generic = resolve(&defaults(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(generic.endpoint, "http://collector:4318/v1/metrics");
        let specific = resolve(
            &defaults(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:9999/custom"),
            ],
        )
        .unwrap();
        assert_eq!(specific.endpoint, "http://metrics:9999/custom");
        let grpc = resolve(
            &defaults(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")],
        )
        .unwrap();
        assert_eq!((grpc.protocol, grpc.endpoint.as_str()), (Protocol::Grpc, "http://collector:4317"));
    }

    #[test]
    fn config_wins_over_metrics_variables_over_generic_ones() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
        ];
        let from_env = resolve(&defaults(), &vars).unwrap();
        assert_eq!(from_env.protocol, Protocol::Grpc);
        assert_eq!(from_env.timeout, Duration::from_secs(2));
        assert_eq!(from_env.headers, [("a".to_owned(), "1".to_owned())]);
        let mut config = defaults();
        config.otlp_protocol = Some("http/protobuf".to_owned());
        config.otlp_timeout = Some(Duration::from_millis(300));
        config.otlp_headers = Some("b=2".to_owned());
        let from_config = resolve(&config, &vars).unwrap();
        assert_eq!(from_config.protocol, Protocol::HttpProtobuf);
        assert_eq!(from_config.timeout, Duration::from_millis(300));
        assert_eq!(from_config.headers, [("b".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn headers_are_trimmed_lowercased_and_percent_decoded() {
        let config = resolve(
            &defaults(),
            &[("OTEL_EXPORTER_OTLP_HEADERS", " Authorization = Basic%20abc%3D , x-tenant=a%2Cb,")],
        )
        .unwrap();
        assert_eq!(
            config.headers,
            [("authorization".to_owned(), "Basic abc=".to_owned()), ("x-tenant".to_owned(), "a,b".to_owned())]
        );
    }

    #[test]
    fn bad_values_name_their_variable_and_what_is_allowed() {
        let error = |vars: &[(&str, &str)]| resolve(&defaults(), vars).unwrap_err().to_string();
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL is `http/json`: allowed grpc or http/protobuf"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4317")]),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is `collector:4317`: scheme `collector` is not http or https; \
             expected an http:// or https:// URL such as http://collector:4317"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]),
            "OTEL_EXPORTER_OTLP_ENDPOINT is `not a url`: relative URL without a base; expected an http:// or https:// \
             URL such as http://collector:4317"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key")]),
            "OTEL_EXPORTER_OTLP_HEADERS has a bad entry `api-key`: no `=`; expected key1=value1,key2=value2 \
             with percent-encoded values"
        );
        assert!(error(&[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "bad name=1")]).contains("not a valid header name"));
        assert!(error(&[("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz")]).contains("two hex digits"));
        assert!(error(&[("OTEL_EXPORTER_OTLP_HEADERS", "k=caf%C3%A9")]).contains("not visible ASCII"));
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
            "OTEL_EXPORTER_OTLP_TIMEOUT is `10s`: expected milliseconds, a whole number from 1 to 600000"
        );
    }

    #[test]
    fn compression_tls_files_and_temporality_from_their_variables() {
        let dir = std::env::temp_dir().join(format!("bw-otlp-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        // Checked for their PEM kind, not for what the certificate says.
        let cert = file("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let key = file("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let config = resolve(
            &defaults(),
            &[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", &cert),
                ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", &cert),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "LowMemory"),
            ],
        )
        .unwrap();
        assert_eq!((config.compression, config.temporality), (Compression::Gzip, Temporality::LowMemory));
        let pem = |path: &str| std::fs::read(path).unwrap();
        assert_eq!(config.tls, ClientTls { ca: Some(pem(&cert)), identity: Some((pem(&cert), pem(&key))) });
        let unset = resolve(&defaults(), &[]).unwrap();
        assert_eq!((unset.compression, unset.temporality), (Compression::None, Temporality::Cumulative));
        assert_eq!(unset.tls, ClientTls::default());

        let error = |vars: &[(&str, &str)]| resolve(&defaults(), vars).unwrap_err().to_string();
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]),
            "OTEL_EXPORTER_OTLP_COMPRESSION is `zstd`: allowed gzip or none"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "deltas")]),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE is `deltas`: allowed cumulative, delta or lowmemory"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert)]),
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set, and none of OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY, \
             OTEL_EXPORTER_OTLP_CLIENT_KEY is: mutual TLS needs the client certificate and its key"
        );
        assert_eq!(
            error(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &key)]),
            format!("OTEL_EXPORTER_OTLP_CERTIFICATE: cannot use {key}: it holds no PEM certificate")
        );
        let missing = dir.join("missing.pem");
        assert!(error(&[("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", missing.to_str().unwrap())]).starts_with(&format!(
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE: cannot use {}: No such file",
            missing.display()
        )));
        let both = [("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.as_str()), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &cert)];
        assert!(
            error(&both).starts_with(&format!("OTEL_EXPORTER_OTLP_CLIENT_KEY: cannot use {cert}: no PEM private key"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_errors_name_the_key_flag_and_variable() {
        let mut config = defaults();
        config.otlp_protocol = Some("udp".to_owned());
        assert_eq!(
            resolve(&config, &[]).unwrap_err().to_string(),
            "config key `export.otlp_protocol` (flag --otlp-protocol, env BATCHWATCH_OTLP_PROTOCOL) is `udp`: \
             allowed grpc or http/protobuf"
        );
    }

    #[test]
    fn exporter_and_interval_variables() {
        let env = |value: &'static str| move |name: &str| (name == "OTEL_METRICS_EXPORTER").then(|| value.to_owned());
        assert!(enabled(&|_| None).unwrap());
        assert!(enabled(&env("otlp,prometheus")).unwrap());
        assert!(!enabled(&env("none")).unwrap());
        assert!(!enabled(&env("prometheus")).unwrap());
        assert_eq!(
            enabled(&env("console")).unwrap_err().to_string(),
            "OTEL_METRICS_EXPORTER is `console`: allowed otlp, prometheus, none, comma-separated"
        );
        let interval_of = |value: &'static str| {
            interval(&defaults(), &move |name: &str| (name == "OTEL_METRIC_EXPORT_INTERVAL").then(|| value.to_owned()))
        };
        assert_eq!(interval_of("1500").unwrap(), Duration::from_millis(1500));
        assert!(interval_of("5").unwrap_err().to_string().starts_with("OTEL_METRIC_EXPORT_INTERVAL is `5`"));
        assert_eq!(interval(&defaults(), &|_| None).unwrap(), Duration::from_secs(60));
        let mut config = defaults();
        config.export_interval = Some(Duration::from_secs(5));
        assert_eq!(interval(&config, &|_| Some("1500".to_owned())).unwrap(), Duration::from_secs(5));
    }
}
