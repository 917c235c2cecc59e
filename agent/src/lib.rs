//! batchwatch: how well every process on a Linux node batches its writes.
//!
//! The data path, one module per step:
//! [`bpf::probes`] (kernel programs, loaded and attached) → kernel maps →
//! [`bpf::collector`] (reads and differences them) → [`model`] (batching metrics
//! and verdicts per process and fd) → [`report`] and [`view`].
//! [`agent`] wires the steps together.

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
pub mod report;
#[cfg(test)]
mod testing;
pub mod transition;
pub mod view;
