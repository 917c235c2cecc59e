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
}
