//! batchwatch: how well every process on a Linux node batches its writes.
//!
//! The data path, one module per step:
//! [`bpf`] (the node checked, the kernel programs loaded and attached) →
//! kernel maps → [`bpf::collector`] (reads and differences them) →
//! [`attribution`] (whose they are: process, descriptor, container; the pod
//! from [`kubernetes`]) → [`model`] (batching metrics and verdicts per
//! process and fd, with the buffer [`depth`] sampled beside it) →
//! [`report`] (JSON), [`view`] (the live view) and [`export`] (OTLP and
//! Prometheus). [`agent`] wires the steps together; where BPF is refused,
//! [`degraded`] polls `/proc` in place of the first two.
//!
//! Beside the path: [`config`] (settings and their checks), [`transition`]
//! (the measured cost of one kernel transition, which the model prices
//! calls at) and [`error_chain`] (an error and its causes on one line).

pub mod agent;
pub mod attribution;
pub mod bpf;
pub mod config;
pub mod degraded;
pub mod depth;
pub mod error_chain;
pub mod export;
pub mod kubernetes;
pub mod model;
pub mod privileges;
pub mod report;
pub mod runtime;
#[cfg(test)]
mod testing;
pub mod transition;
pub mod view;
