//! Reads the kernel maps: sums each entry over CPUs and turns the cumulative
//! counters into deltas since the previous reading.

use std::collections::HashMap;

use agent_common::{
    counters::Counters as _,
    key::FdKey,
    maps::ProbeMiss,
    write::WriteStats,
};
use aya::maps::{MapError, PerCpuValues};

use crate::probes::WriteMaps;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading map {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// What the kernel side could not record, as totals since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeErrors {
    /// New (process, fd) pairs dropped because the statistics map was full.
    pub stats_map_full: u64,
    /// Calls whose iovecs or message headers could not be read.
    pub args_unreadable: u64,
}

/// One reading: the (process, fd) pairs that wrote since the last one.
#[derive(Debug, Default)]
pub struct Reading {
    pub deltas: Vec<(FdKey, WriteStats)>,
    pub probe_errors: ProbeErrors,
    /// Entries in the statistics map.
    pub tracked: usize,
}

pub struct Collector {
    maps: WriteMaps,
    /// Cumulative counters at the previous reading.
    previous: HashMap<FdKey, WriteStats>,
}

impl Collector {
    pub fn new(maps: WriteMaps) -> Collector {
        Collector { maps, previous: HashMap::new() }
    }

    /// Reads every entry and returns what changed since the last call.
    pub fn read(&mut self) -> Result<Reading, CollectError> {
        let read_error = |source| CollectError::Read { map: agent_common::maps::WRITE_STATS, source };
        let mut reading = Reading::default();
        for entry in self.maps.stats.iter() {
            let (key, per_cpu) = entry.map_err(read_error)?;
            let total = sum_cpus(&per_cpu);
            let before = self.previous.insert(key, total).unwrap_or(WriteStats::ZERO);
            let delta = total.since(&before);
            if delta.total_calls() > 0 {
                reading.deltas.push((key, delta));
            }
        }
        reading.tracked = self.previous.len();
        reading.probe_errors = self.probe_errors()?;
        Ok(reading)
    }

    fn probe_errors(&self) -> Result<ProbeErrors, CollectError> {
        let count = |miss: ProbeMiss| -> Result<u64, CollectError> {
            let per_cpu = self
                .maps
                .errors
                .get(&(miss as u32), 0)
                .map_err(|source| CollectError::Read { map: agent_common::maps::PROBE_ERRORS, source })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(ProbeErrors {
            stats_map_full: count(ProbeMiss::StatsMapFull)?,
            args_unreadable: count(ProbeMiss::ArgsUnreadable)?,
        })
    }

    /// The name the kernel recorded for `tgid` at its first tracked write.
    pub fn kernel_comm(&self, tgid: u32) -> Option<String> {
        let comm = self.maps.comms.get(&tgid, 0).ok()?;
        let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        Some(String::from_utf8_lossy(&comm[..len]).into_owned())
    }

    /// Deletes everything the kernel and this collector hold for `tgid`,
    /// once its last delta has been read.
    pub fn forget(&mut self, tgid: u32) {
        let keys: Vec<FdKey> = self.previous.keys().filter(|k| k.tgid == tgid).copied().collect();
        for key in keys {
            self.previous.remove(&key);
            // Already gone is fine: the entry may never have been created on
            // this side, or the LRU map may have evicted it.
            let _ = self.maps.stats.remove(&key);
            let _ = self.maps.last_write.remove(&key);
        }
        let _ = self.maps.comms.remove(&tgid);
    }
}

fn sum_cpus(per_cpu: &PerCpuValues<WriteStats>) -> WriteStats {
    per_cpu.iter().fold(WriteStats::ZERO, |mut sum, cpu| {
        sum.add(cpu);
        sum
    })
}
