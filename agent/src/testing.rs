//! Builders of what the probes would record, for the tests of every module.

use agent_common::{
    hist::log2_slot,
    write::{Outcome, WriteStats, WriteSyscall},
};

/// One interval of same-sized calls on one descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub calls: u64,
    pub records: u64,
    /// Bytes asked per call.
    pub bytes: u64,
    pub gap_ns: u64,
    /// Calls that failed with EAGAIN.
    pub eagain: u64,
}

impl Write {
    /// An un-batched hot writer: 50k one-record calls of 100 B a second.
    pub const HOT: Write = Write { calls: 50_000, records: 1, bytes: 100, gap_ns: 20_000, eagain: 0 };

    pub fn stats(&self) -> WriteStats {
        let mut s = WriteStats::ZERO;
        let syscall = if self.records == 1 { WriteSyscall::Write } else { WriteSyscall::Writev };
        s.calls[syscall as usize] = self.calls;
        s.outcomes[Outcome::Complete as usize] = self.calls - self.eagain;
        s.outcomes[Outcome::WouldBlock as usize] = self.eagain;
        // Failed calls' requests are kept apart, as the probes keep them.
        let through = self.calls - self.eagain;
        s.bytes_requested = through * self.bytes;
        s.bytes_written = through * self.bytes;
        s.records = through * self.records;
        s.failed_bytes_requested = self.eagain * self.bytes;
        s.failed_records = self.eagain * self.records;
        s.bytes_hist[log2_slot(self.bytes, s.bytes_hist.len())] = through;
        s.records_hist[log2_slot(self.records, s.records_hist.len())] = through;
        s.gap_hist[log2_slot(self.gap_ns, s.gap_hist.len())] = self.calls;
        s.gap_ns_total = self.calls * self.gap_ns;
        s
    }
}
