//! Types shared by the kernel programs (`agent-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` and plain old data: the kernel writes these
//! bytes into BPF maps and the agent reads them back with the same layout.
//! The `user` feature adds the `aya::Pod` impls the agent needs.
#![no_std]

#[macro_use]
mod indexed_enum;

pub mod counters;
pub mod hist;
pub mod io_uring;
pub mod key;
pub mod maps;
pub mod sync;
pub mod tracepoints;
pub mod write;
