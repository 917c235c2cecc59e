//! OTLP: where to send ([`settings`]: the config, then the standard
//! `OTEL_*` variables), the request built from a
//! [`Collection`](super::series::Collection) ([`encode`]), and the two
//! transports, gRPC (tonic) and HTTP/protobuf (reqwest) ([`transport`]);
//! delta points for receivers that ask for them ([`temporality`]).
//!
//! The request is built by hand from opentelemetry-proto because the SDK
//! cannot carry pre-aggregated histograms: its metric data types cannot be
//! constructed outside it. `docs/export.md` says more.

pub mod encode;
pub mod settings;
pub mod temporality;
pub mod transport;

pub use self::{
    encode::request,
    settings::{OtlpConfig, OtlpConfigError, enabled, interval, process_env},
    temporality::Deltas,
    transport::{ClientError, SendError, Sender},
};
