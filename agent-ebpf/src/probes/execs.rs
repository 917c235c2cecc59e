//! Process execs, so that a process that replaced its program (`sh -c
//! '...; exec server'`, an entrypoint script) is named after its new one.
//! Hooks `sched:sched_process_exec` (checked on Linux 6.18), which fires in
//! the exec'ing task once the new program is loaded and the task renamed;
//! it needs no field of the record. Execs are rare: the program costs
//! nothing on the write path.

use agent_common::maps::ProbeErrorKind;
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

use crate::{
    aggregate::{MAX_PROCESSES, count_probe_error, rename_tracked},
    tracepoint::traced_tgid,
};

/// Tracked processes that exec'd, until the agent reads them again.
#[map(name = "EXECED")]
static EXECED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_PROCESSES, 0);

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let Some(tgid) = traced_tgid() else { return 0 };
    if rename_tracked(tgid) && EXECED.insert(tgid, 1, 0).is_err() {
        count_probe_error(ProbeErrorKind::ExecMapFull);
    }
    0
}
