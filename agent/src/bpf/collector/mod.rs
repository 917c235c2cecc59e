//! Reads the kernel maps and turns their cumulative counters into deltas
//! since the previous reading.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    time::Duration,
};

use agent_common::{
    counters::{Counters, MapValue},
    io_uring::{CqeErrorKey, EnterStats, RingKey, RingOpStats, RingSetup, SetupStats},
    key::FdKey,
    maps::{self, ProbeErrorKind},
    sync::{SyncMark, SyncStats},
    write::{MARK_EVERY_NS, WriteEntry, WriteStats},
};
use aya::{
    Pod,
    maps::{IterableMap as _, MapData, MapError},
};

mod bulk_read;
mod packed;

use self::{bulk_read::BulkReader, packed::Packed};
use crate::bpf::probes::Maps;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A map could not be read through aya.
    #[error("reading map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    /// A batch read of a map failed.
    #[error("reading map {map} in batches: {source}")]
    BulkRead {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What the kernel side could not record, as totals since the agent started.
/// The report gives its fields under these names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Execs not recorded because their map was full: those processes keep
    /// their old name until they exit.
    pub exec_map_full: u64,
    /// Enters on a registered ring whose ring could not be told: not counted.
    pub ring_index_unresolved: u64,
    /// Calls whose count, `iovcnt` or `vlen` was above what the kernel ever
    /// accepts, counted clamped to that limit.
    pub args_clamped: u64,
    /// 32-bit (ia32) calls of traced syscalls the raw-tracepoint mode skipped.
    pub compat_skipped: u64,
    /// Calls the kernel did not run a program for, because it (or another
    /// BPF program) was already running on that CPU: the programs'
    /// `recursion_misses`, summed. Set by the agent, not read from a map.
    pub recursion_misses: u64,
    /// Exits the kernel did not tell (the process had left its maps, or
    /// their exit map was full) that a `/proc` sweep found: the process
    /// gone, or its pid taken by another. Set by the agent.
    pub exits_missed: u64,
    /// Syncs not recorded (or, their duration only, not timed) because a
    /// sync map was full.
    pub sync_map_full: u64,
}

impl ProbeErrors {
    /// Each count with its kind, in the kinds' order.
    pub fn by_kind(&self) -> [(ProbeErrorKind, u64); ProbeErrorKind::COUNT] {
        [
            (ProbeErrorKind::StatsMapFull, self.stats_map_full),
            (ProbeErrorKind::ArgsUnreadable, self.args_unreadable),
            (ProbeErrorKind::UringMapFull, self.uring_map_full),
            (ProbeErrorKind::ExitMapFull, self.exit_map_full),
            (ProbeErrorKind::ExecMapFull, self.exec_map_full),
            (ProbeErrorKind::RingIndexUnresolved, self.ring_index_unresolved),
            (ProbeErrorKind::ArgsClamped, self.args_clamped),
            (ProbeErrorKind::CompatSkipped, self.compat_skipped),
            (ProbeErrorKind::RecursionMisses, self.recursion_misses),
            (ProbeErrorKind::ExitsMissed, self.exits_missed),
            (ProbeErrorKind::SyncMapFull, self.sync_map_full),
        ]
    }
}

/// One reading: what changed since the last one.
#[derive(Debug, Default)]
pub struct Reading {
    pub writes: Vec<(FdKey, WriteStats)>,
    pub uring_enters: Vec<(FdKey, EnterStats)>,
    pub uring_ops: Vec<(RingKey, RingOpStats)>,
    pub uring_cqe_errors: Vec<(CqeErrorKey, u64)>,
    pub uring_setups: Vec<(u32, SetupStats)>,
    pub syncs: Vec<(FdKey, SyncStats)>,
    /// Every ring whose creation the probes saw, by context.
    pub rings: HashMap<u64, RingSetup>,
    /// Tracked processes whose last thread exited.
    pub exited: HashSet<u32>,
    /// Tracked processes that exec'd: their identity is read again.
    pub execed: HashSet<u32>,
    pub probe_errors: ProbeErrors,
    /// (process, fd) pairs in the write statistics map.
    pub tracked: usize,
    /// Idle pairs this reading removed from the kernel maps.
    pub evicted: usize,
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

/// One map of counters, shared by all CPUs, and its previous reading.
/// `E` is the map's value: its counters, and for some maps what the
/// probes keep beside them (see [`MapValue`]).
struct DeltaMap<K: Pod, E: Pod + MapValue> {
    name: &'static str,
    map: aya::maps::HashMap<MapData, K, E>,
    previous: HashMap<K, Packed>,
    reader: BulkReader<K, E>,
}

impl<K: Pod + Eq + Hash + OfProcess, E: Pod + MapValue> DeltaMap<K, E> {
    fn new(name: &'static str, map: aya::maps::HashMap<MapData, K, E>) -> Self {
        DeltaMap { name, map, previous: HashMap::new(), reader: BulkReader::default() }
    }

    /// Every entry that changed, with what changed: the whole map, in batches.
    fn deltas(&mut self) -> Result<Vec<(K, E::Counters)>, CollectError> {
        let mut totals = Vec::new();
        self.reader
            .read(self.map.map(), 1, |key, value| totals.push((key, value[0].counters())))
            .map_err(|source| CollectError::BulkRead { map: self.name, source })?;
        Ok(totals.into_iter().filter_map(|(key, total)| self.delta(key, total)).collect())
    }

    /// What changed among `keys`, one lookup each (a key gone from the map
    /// is skipped).
    fn deltas_of(&mut self, keys: impl IntoIterator<Item = K>) -> Vec<(K, E::Counters)> {
        let keys = keys.into_iter();
        // Sized up front: a tick in which thousands of processes first wrote
        // would otherwise leave up to twice their size unused.
        let mut totals = Vec::with_capacity(keys.size_hint().0);
        totals.extend(keys.filter_map(|key| Some((key, self.map.get(&key, 0).ok()?.counters()))));
        totals.into_iter().filter_map(|(key, total)| self.delta(key, total)).collect()
    }

    /// What changed in `key` since the last reading, if anything; `total` becomes
    /// the new reading.
    fn delta(&mut self, key: K, total: E::Counters) -> Option<(K, E::Counters)> {
        let delta = match self.previous.insert(key, Packed::pack(&total)) {
            Some(before) => total.since(&before.unpack()),
            None => total,
        };
        (!delta.is_zero()).then_some((key, delta))
    }

    /// The last deltas (zero or not) of the processes in `gone` (which have
    /// exited, so their entries can no longer change) among their known keys
    /// and `more`, then deletes those entries here and in the kernel. Reading
    /// them again closes the window between the tick's reading and the exit
    /// check, in which they may have written.
    fn drain(&mut self, gone: &HashSet<u32>, more: impl IntoIterator<Item = K>) -> Vec<(K, E::Counters)> {
        let mut keys: HashSet<K> = self.previous.keys().filter(|k| gone.contains(&k.tgid())).copied().collect();
        keys.extend(more.into_iter().filter(|k| gone.contains(&k.tgid())));
        self.forget(keys)
    }

    /// The last deltas (zero or not) of `keys`, then deletes them here and
    /// in the kernel.
    fn forget(&mut self, keys: impl IntoIterator<Item = K>) -> Vec<(K, E::Counters)> {
        let mut last = Vec::new();
        for key in keys {
            if let Ok(total) = self.map.get(&key, 0) {
                let before = self.previous.get(&key).map_or_else(E::Counters::zeroed, Packed::unpack);
                last.push((key, total.counters().since(&before)));
            }
            // Already gone is fine.
            let _ = self.map.remove(&key);
            self.previous.remove(&key);
        }
        last
    }
}

/// How far before the previous reading a mark still says its entry may
/// have changed: a mark trails the pair's last call by up to
/// `MARK_EVERY_NS`, and a call may be between its mark and its update as
/// the agent reads (10 ms is far longer than a probe takes).
const MARK_MARGIN_NS: u64 = MARK_EVERY_NS + 10_000_000;

/// Now on the probes' clock (`bpf_ktime_get_ns` is `CLOCK_MONOTONIC`).
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

pub struct Collector {
    writes: DeltaMap<FdKey, WriteEntry>,
    /// Reads `LAST_WRITE`, which says which write statistics changed.
    last_write_reader: BulkReader<FdKey, u64>,
    /// This tick's `LAST_WRITE`: every (process, fd) the probes saw write
    /// and have not forgotten, with its mark (kernel monotonic ns, at most
    /// `MARK_EVERY_NS` before its last call).
    recent: Vec<(FdKey, u64)>,
    /// When the previous reading began, on the probes' clock.
    last_read_ns: u64,
    /// How long a pair may stay idle in the kernel maps (`maps.evict_idle_after`).
    evict_idle_after_ns: u64,
    uring_enters: DeltaMap<FdKey, EnterStats>,
    uring_ops: DeltaMap<RingKey, RingOpStats>,
    uring_cqe_errors: DeltaMap<CqeErrorKey, u64>,
    uring_setups: DeltaMap<u32, SetupStats>,
    syncs: DeltaMap<FdKey, SyncStats>,
    sync_marks: aya::maps::HashMap<MapData, FdKey, SyncMark>,
    sync_marks_reader: BulkReader<FdKey, SyncMark>,
    last_write: aya::maps::HashMap<MapData, FdKey, u64>,
    comms: aya::maps::HashMap<MapData, u32, [u8; 16]>,
    rings: aya::maps::HashMap<MapData, u64, RingSetup>,
    exited: aya::maps::HashMap<MapData, u32, u8>,
    execed: aya::maps::HashMap<MapData, u32, u8>,
    probe_errors: aya::maps::PerCpuArray<MapData, u64>,
}

impl Collector {
    pub fn new(maps: Maps, evict_idle_after: Duration) -> Collector {
        Collector {
            writes: DeltaMap::new(maps::WRITE_STATS, maps.write_stats),
            last_write_reader: BulkReader::default(),
            recent: Vec::new(),
            last_read_ns: 0,
            evict_idle_after_ns: evict_idle_after.as_nanos() as u64,
            uring_enters: DeltaMap::new(maps::URING_ENTERS, maps.uring_enters),
            uring_ops: DeltaMap::new(maps::URING_OPS, maps.uring_ops),
            uring_cqe_errors: DeltaMap::new(maps::URING_CQE_ERRORS, maps.uring_cqe_errors),
            uring_setups: DeltaMap::new(maps::URING_SETUPS, maps.uring_setups),
            syncs: DeltaMap::new(maps::SYNC_STATS, maps.sync_stats),
            sync_marks: maps.sync_marks,
            sync_marks_reader: BulkReader::default(),
            last_write: maps.last_write,
            comms: maps.comms,
            rings: maps.uring_rings,
            exited: maps.exited,
            execed: maps.execed,
            probe_errors: maps.probe_errors,
        }
    }

    /// Reads every map and returns what changed since the last call.
    pub fn read(&mut self) -> Result<Reading, CollectError> {
        let rings = self
            .rings
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|source| CollectError::Map { map: maps::URING_RINGS, source })?;
        let exited = self
            .exited
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|source| CollectError::Map { map: maps::EXITED, source })?;
        let execed = self.take_execs()?;
        let mut writes = self.write_deltas()?;
        let evicted = self.evict_idle();
        let evicted_count = evicted.len();
        // What evicted pairs wrote since the last reading: nothing, unless a
        // call came as they went.
        writes.extend(evicted.into_iter().filter(|(_, delta)| !delta.is_zero()));
        let mut syncs = self.syncs.deltas()?;
        syncs.extend(self.evict_idle_syncs()?.into_iter().filter(|(_, delta)| !delta.is_zero()));
        Ok(Reading {
            writes,
            syncs,
            uring_enters: self.uring_enters.deltas()?,
            uring_ops: self.uring_ops.deltas()?,
            uring_cqe_errors: self.uring_cqe_errors.deltas()?,
            uring_setups: self.uring_setups.deltas()?,
            rings,
            exited,
            execed,
            probe_errors: self.probe_errors()?,
            tracked: self.writes.previous.len(),
            evicted: evicted_count,
        })
    }

    /// What the write statistics that changed since the last reading
    /// changed by. Reading every entry would copy 0.8 KB for every pair
    /// that ever wrote, every tick; `LAST_WRITE` (one 8-byte mark per
    /// entry, read in batches) says which ones may have written since.
    fn write_deltas(&mut self) -> Result<Vec<(FdKey, WriteStats)>, CollectError> {
        let started_ns = monotonic_ns();
        self.recent.clear();
        let recent = &mut self.recent;
        self.last_write_reader
            .read(self.last_write.map(), 1, |key, at| recent.push((key, at[0])))
            .map_err(|source| CollectError::BulkRead { map: maps::LAST_WRITE, source })?;
        // A mark is at most MARK_EVERY_NS older than the pair's last call,
        // which marks before it updates the statistics: the margin covers
        // both, so a pair is read again at most once for nothing.
        let since = self.last_read_ns.saturating_sub(MARK_MARGIN_NS);
        self.last_read_ns = started_ns;
        let active: Vec<FdKey> = self.recent.iter().filter(|&&(_, at)| at >= since).map(|&(key, _)| key).collect();
        Ok(self.writes.deltas_of(active))
    }

    /// Removes the pairs idle for `maps.evict_idle_after` at this reading
    /// from the kernel maps, so that their room goes to active writers (the
    /// model keeps their totals; a pair that writes again starts a new entry,
    /// its first gap unknown). Returns their last deltas.
    fn evict_idle(&mut self) -> Vec<(FdKey, WriteStats)> {
        // A mark this old means the last call, at most MARK_EVERY_NS after
        // it, was idle long enough; and any call since would have marked again.
        let before = self.last_read_ns.saturating_sub(self.evict_idle_after_ns + MARK_EVERY_NS);
        let idle: Vec<FdKey> = self
            .recent
            .iter()
            .filter(|&&(key, at)| at < before && self.last_write.get(&key, 0).ok() == Some(at))
            .map(|&(key, _)| key)
            .collect();
        // LAST_WRITE first: a call that comes in between marks it again and
        // then finds its statistics gone, which loses that one call (the probe
        // may hold the entry as it is deleted); the other order could leave
        // statistics that LAST_WRITE no longer names.
        for key in &idle {
            let _ = self.last_write.remove(key);
        }
        self.writes.forget(idle)
    }

    /// Removes the descriptors that have not synced for
    /// `maps.evict_idle_after` from the sync maps (the model keeps their
    /// totals), as `evict_idle` does for writes. Returns their last deltas.
    fn evict_idle_syncs(&mut self) -> Result<Vec<(FdKey, SyncStats)>, CollectError> {
        let before = self.last_read_ns.saturating_sub(self.evict_idle_after_ns);
        let mut idle = Vec::new();
        self.sync_marks_reader
            .read(self.sync_marks.map(), 1, |key, mark| {
                if mark[0].at_ns < before {
                    idle.push(key);
                }
            })
            .map_err(|source| CollectError::BulkRead { map: maps::SYNC_MARKS, source })?;
        for key in &idle {
            let _ = self.sync_marks.remove(key);
        }
        Ok(self.syncs.forget(idle))
    }

    fn probe_errors(&self) -> Result<ProbeErrors, CollectError> {
        let count = |kind: ProbeErrorKind| -> Result<u64, CollectError> {
            let per_cpu = self
                .probe_errors
                .get(&(kind as u32), 0)
                .map_err(|source| CollectError::Map { map: maps::PROBE_ERRORS, source })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(ProbeErrors {
            stats_map_full: count(ProbeErrorKind::StatsMapFull)?,
            args_unreadable: count(ProbeErrorKind::ArgsUnreadable)?,
            uring_map_full: count(ProbeErrorKind::UringMapFull)?,
            exit_map_full: count(ProbeErrorKind::ExitMapFull)?,
            exec_map_full: count(ProbeErrorKind::ExecMapFull)?,
            ring_index_unresolved: count(ProbeErrorKind::RingIndexUnresolved)?,
            args_clamped: count(ProbeErrorKind::ArgsClamped)?,
            compat_skipped: count(ProbeErrorKind::CompatSkipped)?,
            // The programs' own count, which the agent adds.
            recursion_misses: 0,
            exits_missed: 0,
            sync_map_full: count(ProbeErrorKind::SyncMapFull)?,
        })
    }

    /// The processes that exec'd since the last reading, taken out of the
    /// kernel's map (one exec'ing again before the agent reads it is one).
    fn take_execs(&mut self) -> Result<HashSet<u32>, CollectError> {
        let execed: HashSet<u32> = self
            .execed
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|source| CollectError::Map { map: maps::EXECED, source })?;
        for tgid in &execed {
            // Gone already if the process exited and was drained.
            let _ = self.execed.remove(tgid);
        }
        Ok(execed)
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
        let writes = self.writes.drain(gone, self.recent.iter().map(|&(key, _)| key));
        for (key, _) in &writes {
            // The LRU map may have evicted it already.
            let _ = self.last_write.remove(key);
        }
        let uring_ops = self.uring_ops.drain(gone, []);
        let mut rings = HashMap::new();
        for (ring, _) in &uring_ops {
            if let Ok(setup) = self.rings.get(&ring.ctx, 0) {
                rings.insert(ring.ctx, setup);
            }
            let _ = self.rings.remove(&ring.ctx);
        }
        let syncs = self.syncs.drain(gone, []);
        for (key, _) in &syncs {
            let _ = self.sync_marks.remove(key);
        }
        for tgid in gone {
            let _ = self.comms.remove(tgid);
            let _ = self.exited.remove(tgid);
            let _ = self.execed.remove(tgid);
        }
        Reading {
            writes,
            uring_enters: self.uring_enters.drain(gone, []),
            uring_ops,
            uring_cqe_errors: self.uring_cqe_errors.drain(gone, []),
            uring_setups: self.uring_setups.drain(gone, []),
            syncs,
            rings,
            ..Reading::default()
        }
    }
}
