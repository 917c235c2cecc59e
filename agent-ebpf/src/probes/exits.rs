//! Process exits, so that the agent learns of them without checking every
//! process in `/proc` at every tick. Hooks `sched:sched_process_exit`
//! (checked on Linux 6.18), whose `group_dead` says the last thread of the
//! process is exiting; a kernel without that field refuses the program, and
//! the agent then checks `/proc` instead.

use agent_common::{maps::ProbeErrorKind, tracepoints::EXIT_GROUP_DEAD};
use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

use crate::{
    aggregate::{MAX_PROCESSES, count_probe_error, is_tracked},
    tracepoint::traced_tgid,
};

/// Tracked processes that exited, until the agent retires them.
#[map(name = "EXITED")]
static EXITED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_PROCESSES, 0);

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let group_dead = read_field!(&ctx, EXIT_GROUP_DEAD as u8);
    let Some(tgid) = traced_tgid() else { return 0 };
    if group_dead != 0 && is_tracked(tgid) && EXITED.insert(tgid, 1, 0).is_err() {
        count_probe_error(ProbeErrorKind::ExitMapFull);
    }
    0
}
