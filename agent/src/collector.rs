//! Reads the kernel maps: sums each entry over CPUs and turns the cumulative
//! counters into deltas since the previous reading.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    mem,
};

use agent_common::{
    counters::Counters,
    io_uring::{CqeErrorKey, EnterStats, RingKey, RingOpStats, RingSetup, SetupStats},
    key::FdKey,
    maps::{self, ProbeMiss},
    write::WriteStats,
};
use aya::{
    Pod,
    maps::{MapData, MapError, PerCpuHashMap, PerCpuValues},
};

use crate::probes::Maps;

#[derive(Debug, thiserror::Error)]
#[error("reading map {map}: {source}")]
pub struct CollectError {
    map: &'static str,
    #[source]
    source: MapError,
}

/// What the kernel side could not record, as totals since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeErrors {
    /// New (process, fd) pairs dropped because the statistics map was full.
    pub stats_map_full: u64,
    /// Calls whose iovecs or message headers could not be read.
    pub args_unreadable: u64,
    /// Rings or ring fds dropped because an io_uring map was full.
    pub uring_map_full: u64,
    /// Exits not recorded because their map was full (the agent's periodic
    /// `/proc` sweep finds those processes gone).
    pub exit_map_full: u64,
}

/// One reading: what changed since the last one.
#[derive(Debug, Default)]
pub struct Reading {
    pub writes: Vec<(FdKey, WriteStats)>,
    pub uring_enters: Vec<(FdKey, EnterStats)>,
    pub uring_ops: Vec<(RingKey, RingOpStats)>,
    pub uring_cqe_errors: Vec<(CqeErrorKey, u64)>,
    pub uring_setups: Vec<(u32, SetupStats)>,
    /// Every ring whose creation the probes saw, by context.
    pub rings: HashMap<u64, RingSetup>,
    /// Tracked processes whose last thread exited.
    pub exited: HashSet<u32>,
    pub probe_errors: ProbeErrors,
    /// (process, fd) pairs in the write statistics map.
    pub tracked: usize,
}

/// Keys that belong to one process, so its entries can be forgotten.
pub trait OfProcess {
    fn tgid(&self) -> u32;
}

impl OfProcess for FdKey {
    fn tgid(&self) -> u32 {
        self.tgid
    }
}

impl OfProcess for RingKey {
    fn tgid(&self) -> u32 {
        self.tgid
    }
}

impl OfProcess for CqeErrorKey {
    fn tgid(&self) -> u32 {
        self.ring.tgid
    }
}

impl OfProcess for u32 {
    fn tgid(&self) -> u32 {
        *self
    }
}

/// One per-CPU map of counters and its previous reading.
struct DeltaMap<K: Pod, V: Pod> {
    name: &'static str,
    map: PerCpuHashMap<MapData, K, V>,
    previous: HashMap<K, V>,
}

impl<K: Pod + Eq + Hash + OfProcess, V: Pod + Counters> DeltaMap<K, V> {
    fn new(name: &'static str, map: PerCpuHashMap<MapData, K, V>) -> Self {
        DeltaMap { name, map, previous: HashMap::new() }
    }

    /// Every entry that changed, with what changed.
    fn deltas(&mut self) -> Result<Vec<(K, V)>, CollectError> {
        let mut changed = Vec::new();
        for entry in self.map.iter() {
            let (key, per_cpu) = entry.map_err(|source| CollectError { map: self.name, source })?;
            let total = sum_cpus(&per_cpu);
            let delta = match self.previous.insert(key, total) {
                Some(before) => total.since(&before),
                None => total,
            };
            if !delta.is_zero() {
                changed.push((key, delta));
            }
        }
        Ok(changed)
    }

    /// The last deltas (zero or not) of every entry of the processes in
    /// `gone` (which have exited, so their entries can no longer change),
    /// then deletes the entries here and in the kernel. Reading them again
    /// closes the window between the tick's reading and the exit check, in
    /// which they may have written.
    fn drain(&mut self, gone: &HashSet<u32>) -> Vec<(K, V)> {
        let in_kernel: Vec<K> = self.map.keys().filter_map(Result::ok).filter(|k| gone.contains(&k.tgid())).collect();
        let mut last = Vec::new();
        for key in in_kernel {
            if let Ok(per_cpu) = self.map.get(&key, 0) {
                let before = self.previous.get(&key).copied().unwrap_or_else(zero);
                last.push((key, sum_cpus(&per_cpu).since(&before)));
            }
            // Already gone is fine: nothing else deletes, but be lenient.
            let _ = self.map.remove(&key);
        }
        self.previous.retain(|key, _| !gone.contains(&key.tgid()));
        last
    }
}

fn sum_cpus<V: Pod + Counters>(per_cpu: &PerCpuValues<V>) -> V {
    let mut total = per_cpu[0];
    for cpu in per_cpu.iter().skip(1) {
        total.add(cpu);
    }
    total
}

/// An all-zero value of a counters struct.
fn zero<V: Pod + Counters>() -> V {
    let mut value = mem::MaybeUninit::<V>::zeroed();
    // SAFETY: `Counters` types are plain u64s, for which all zeros is valid.
    unsafe { value.assume_init_mut() }.words_mut().fill(0);
    // SAFETY: as above.
    unsafe { value.assume_init() }
}

pub struct Collector {
    writes: DeltaMap<FdKey, WriteStats>,
    uring_enters: DeltaMap<FdKey, EnterStats>,
    uring_ops: DeltaMap<RingKey, RingOpStats>,
    uring_cqe_errors: DeltaMap<CqeErrorKey, u64>,
    uring_setups: DeltaMap<u32, SetupStats>,
    last_write: aya::maps::HashMap<MapData, FdKey, u64>,
    comms: aya::maps::HashMap<MapData, u32, [u8; 16]>,
    rings: aya::maps::HashMap<MapData, u64, RingSetup>,
    exited: aya::maps::HashMap<MapData, u32, u8>,
    misses: aya::maps::PerCpuArray<MapData, u64>,
}

impl Collector {
    pub fn new(maps: Maps) -> Collector {
        Collector {
            writes: DeltaMap::new(maps::WRITE_STATS, maps.write_stats),
            uring_enters: DeltaMap::new(maps::URING_ENTERS, maps.uring_enters),
            uring_ops: DeltaMap::new(maps::URING_OPS, maps.uring_ops),
            uring_cqe_errors: DeltaMap::new(maps::URING_CQE_ERRORS, maps.uring_cqe_errors),
            uring_setups: DeltaMap::new(maps::URING_SETUPS, maps.uring_setups),
            last_write: maps.last_write,
            comms: maps.comms,
            rings: maps.uring_rings,
            exited: maps.exited,
            misses: maps.misses,
        }
    }

    /// Reads every map and returns what changed since the last call.
    pub fn read(&mut self) -> Result<Reading, CollectError> {
        let rings = self
            .rings
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|source| CollectError { map: maps::URING_RINGS, source })?;
        let exited = self
            .exited
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|source| CollectError { map: maps::EXITED, source })?;
        Ok(Reading {
            writes: self.writes.deltas()?,
            uring_enters: self.uring_enters.deltas()?,
            uring_ops: self.uring_ops.deltas()?,
            uring_cqe_errors: self.uring_cqe_errors.deltas()?,
            uring_setups: self.uring_setups.deltas()?,
            rings,
            exited,
            probe_errors: self.probe_errors()?,
            tracked: self.writes.previous.len(),
        })
    }

    fn probe_errors(&self) -> Result<ProbeErrors, CollectError> {
        let count = |miss: ProbeMiss| -> Result<u64, CollectError> {
            let per_cpu = self
                .misses
                .get(&(miss as u32), 0)
                .map_err(|source| CollectError { map: maps::PROBE_ERRORS, source })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(ProbeErrors {
            stats_map_full: count(ProbeMiss::StatsMapFull)?,
            args_unreadable: count(ProbeMiss::ArgsUnreadable)?,
            uring_map_full: count(ProbeMiss::UringMapFull)?,
            exit_map_full: count(ProbeMiss::ExitMapFull)?,
        })
    }

    /// The (process, fd) keys in the kernel's write statistics right now.
    pub fn kernel_write_keys(&self) -> Vec<FdKey> {
        self.writes.map.keys().filter_map(Result::ok).collect()
    }

    /// The name the kernel recorded for `tgid` when it was first tracked.
    pub fn kernel_comm(&self, tgid: u32) -> Option<String> {
        let comm = self.comms.get(&tgid, 0).ok()?;
        let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        Some(String::from_utf8_lossy(&comm[..len]).into_owned())
    }

    /// The last deltas of the processes in `gone`, which have exited, then
    /// deletes everything the kernel and this collector hold for them.
    pub fn drain(&mut self, gone: &HashSet<u32>) -> Reading {
        let writes = self.writes.drain(gone);
        for (key, _) in &writes {
            // The LRU map may have evicted it already.
            let _ = self.last_write.remove(key);
        }
        let uring_ops = self.uring_ops.drain(gone);
        let mut rings = HashMap::new();
        for (ring, _) in &uring_ops {
            if let Ok(setup) = self.rings.get(&ring.ctx, 0) {
                rings.insert(ring.ctx, setup);
            }
            let _ = self.rings.remove(&ring.ctx);
        }
        for tgid in gone {
            let _ = self.comms.remove(tgid);
            let _ = self.exited.remove(tgid);
        }
        Reading {
            writes,
            uring_enters: self.uring_enters.drain(gone),
            uring_ops,
            uring_cqe_errors: self.uring_cqe_errors.drain(gone),
            uring_setups: self.uring_setups.drain(gone),
            rings,
            ..Reading::default()
        }
    }
}
