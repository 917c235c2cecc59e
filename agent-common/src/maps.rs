//! Map and program names, used by the kernel programs and by the loader.

/// Per-CPU write statistics keyed by [`crate::write::WriteKey`].
pub const WRITE_STATS: &str = "WRITE_STATS";
/// Time of the last write call per (tgid, fd), shared by all CPUs.
pub const LAST_WRITE: &str = "LAST_WRITE";
/// Command name of each process the first time one of its fds is tracked.
pub const PROCESS_COMMS: &str = "PROCESS_COMMS";
/// Per-CPU counters of what the kernel side could not record.
pub const PROBE_ERRORS: &str = "PROBE_ERRORS";

/// Load-time global: the agent's own tgid, whose writes are not counted.
pub const GLOBAL_SELF_TGID: &str = "SELF_TGID";
