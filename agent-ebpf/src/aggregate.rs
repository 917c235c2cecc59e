//! In-kernel aggregation helpers shared by all probes.

use agent_common::{hist::log2_slot, write::ProbeError};
use aya_ebpf::{macros::map, maps::PerCpuArray};

/// Per-CPU counters of what the probes could not record, indexed by
/// [`ProbeError`].
#[map(name = "PROBE_ERRORS")]
static PROBE_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ProbeError::COUNT, 0);

/// Adds one to the log2 slot of `value`.
#[inline(always)]
pub fn hist_add<const N: usize>(hist: &mut [u64; N], value: u64) {
    // `log2_slot` caps the slot by comparing `value`, which the verifier
    // cannot relate to the slot. Hiding the slot from LLVM keeps a bounds
    // check on the slot itself, which the verifier can follow.
    // SAFETY: reading a local.
    let slot = unsafe { core::ptr::read_volatile(&log2_slot(value, N)) };
    if let Some(count) = hist.get_mut(slot) {
        *count += 1;
    }
}

/// Counts something the probes could not record.
#[inline(always)]
pub fn count_error(error: ProbeError) {
    if let Some(counter) = PROBE_ERRORS.get_ptr_mut(error as u32) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and probes do not nest.
        unsafe { *counter += 1 };
    }
}
