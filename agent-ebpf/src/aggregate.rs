//! In-kernel aggregation helpers shared by all probes.
//!
//! The statistics per (process, fd), per ring and per process live once,
//! in hash maps shared by all CPUs, so that their memory does not grow with
//! the node's CPU count (a per-CPU hash keeps one copy of every value per
//! possible CPU: 192 copies of each 0.8 KB entry on a 192-CPU node). Every
//! counter in them is added to atomically: threads of one process write to
//! one descriptor from several CPUs at once. A shared entry costs what a
//! per-CPU copy did, because the copies needed atomic adds too (programs
//! run with migration, not preemption, disabled, so two programs on one CPU
//! could interleave on a copy): the write programs ran 260 ns a run with
//! per-CPU copies and 259 shared, and 8 threads on both CPUs of the test
//! machine writing to one descriptor made no difference beyond the spread
//! (docs/performance.md). The kernel keeps a
//! program from running twice on one CPU (it counts that in
//! `recursion_misses`), so state only one program uses, such as the
//! `sendmmsg` scratch, needs no atomics.

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xchg};

use agent_common::{hist::log2_slot, maps::ProbeErrorKind};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_comm,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};

/// Default capacity of the maps keyed per process; the agent sets the
/// configured one at load time.
pub const MAX_PROCESSES: u32 = 8192;

/// Per-CPU counters of what the probes could not record, indexed by
/// [`ProbeErrorKind`].
#[map(name = "PROBE_ERRORS")]
static PROBE_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ProbeErrorKind::COUNT as u32, 0);

/// The name of each process the first time it is tracked, so that one that
/// wrote and exited between two reads still has a name.
#[map(name = "PROCESS_COMMS")]
static PROCESS_COMMS: LruHashMap<u32, [u8; 16]> = LruHashMap::with_max_entries(MAX_PROCESSES, 0);

/// Whether the probes track `tgid`: it has had an entry in some map.
#[inline(always)]
pub fn is_tracked(tgid: u32) -> bool {
    PROCESS_COMMS.get_ptr(tgid).is_some()
}

/// After an exec, the new name of `tgid` replaces its old one, if the
/// probes track it; returns whether they do.
#[inline(always)]
pub fn rename_tracked(tgid: u32) -> bool {
    if !is_tracked(tgid) {
        return false;
    }
    if let Ok(comm) = bpf_get_current_comm() {
        let _ = PROCESS_COMMS.insert(tgid, comm, 0);
    }
    true
}

/// Adds `n` to a counter in a map value, in one atomic instruction (see
/// the module's comment).
#[inline(always)]
pub fn add(counter: &mut u64, n: u64) {
    // SAFETY: `counter` is a valid, aligned u64; the result is not used, so
    // this is BPF's plain atomic add (`lock xadd`).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}

/// Adds one to the log2 slot of `value`.
#[inline(always)]
pub fn hist_add<const N: usize>(hist: &mut [u64; N], value: u64) {
    // `log2_slot` caps the slot by comparing `value`, which the verifier
    // cannot relate to the slot. Hiding the slot from LLVM keeps a bounds
    // check on the slot itself, which the verifier can follow.
    // SAFETY: reading a local.
    let slot = unsafe { core::ptr::read_volatile(&log2_slot(value, N)) };
    if let Some(count) = hist.get_mut(slot) {
        add(count, 1);
    }
}

/// Stores `value` in a word that other CPUs update too and returns what it
/// held: one BPF atomic exchange, so each old value goes to exactly one caller.
#[inline(always)]
pub fn swap(word: &mut u64, value: u64) -> u64 {
    // SAFETY: a valid, aligned map value word; only ever updated atomically.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::Relaxed }>(word, value) }
}

/// Counts something the probes could not record.
#[inline(always)]
pub fn count_probe_error(kind: ProbeErrorKind) {
    if let Some(counter) = PROBE_ERRORS.get_ptr_mut(kind as u32) {
        // SAFETY: this CPU's slot, a valid map value.
        add(unsafe { &mut *counter }, 1);
    }
}

/// The value for `key` in `map`, shared by all CPUs (update it with
/// [`add`]), created from `zero` on first use (and the process's name
/// remembered then). A full map is counted as `full`.
#[inline(always)]
pub fn entry<K, V>(map: &HashMap<K, V>, key: &K, zero: &V, tgid: u32, full: ProbeErrorKind) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    if map.insert(key, zero, BPF_NOEXIST as u64).is_ok()
        && let Ok(comm) = bpf_get_current_comm()
    {
        let _ = PROCESS_COMMS.insert(tgid, comm, 0);
    }
    let value = map.get_ptr_mut(key);
    // Another CPU may have created it in between: only a real miss is "full".
    if value.is_none() {
        count_probe_error(full);
    }
    value
}
