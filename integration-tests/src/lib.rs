//! Shared by the integration tests: what the workload helper reports.

use serde::{Deserialize, Serialize};

/// Printed as one JSON line by the `workload` helper when it is done: what it
/// did, counted by itself, for the tests to compare with what batchwatch saw.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub pid: u32,
    /// The descriptor the pattern wrote to.
    pub fd: i32,
    /// Calls made on `fd`.
    pub calls: u64,
    /// Bytes the calls wrote.
    pub bytes_written: u64,
    /// Calls that wrote less than asked.
    pub short: u64,
    /// Calls that failed with EAGAIN.
    pub eagain: u64,
    /// Calls that failed with EPIPE.
    pub epipe: u64,
    /// io_uring: SQEs submitted, `io_uring_enter` calls made, of which
    /// SQPOLL wake-ups, and CQEs that overflowed the CQ.
    #[serde(default)]
    pub sqes: u64,
    #[serde(default)]
    pub enters: u64,
    #[serde(default)]
    pub wakeups: u64,
    #[serde(default)]
    pub cq_overflows: u64,
    /// Syncs made (fsync calls, or io_uring FSYNC requests), and those that failed.
    #[serde(default)]
    pub syncs: u64,
    #[serde(default)]
    pub sync_errors: u64,
    /// `io_uring_setup` calls refused.
    #[serde(default)]
    pub denied_setups: u64,
    /// Child processes the pattern started, each with what it wrote.
    #[serde(default)]
    pub children: Vec<Child>,
}

/// A child process a pattern started, and the writes it made.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Child {
    pub pid: u32,
    pub fd: i32,
    pub calls: u64,
    pub bytes_written: u64,
}

/// The shape of the workload's `threads` pattern, which its test checks.
pub mod threads {
    /// Bytes of each `write()` (even threads, and the first call).
    pub const WRITE_BYTES: usize = 100;
    /// Iovecs of each `writev()` (odd threads), and bytes in each (at most
    /// [`WRITE_BYTES`]: the iovecs point into the same record).
    pub const WRITEV_IOVECS: usize = 4;
    pub const IOVEC_BYTES: usize = 50;
    const _: () = assert!(IOVEC_BYTES <= WRITE_BYTES);
}
