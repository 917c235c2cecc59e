//! Map and program names, used by the kernel programs and by the loader.

/// Write statistics keyed by [`crate::key::FdKey`], shared by all CPUs.
pub const WRITE_STATS: &str = "WRITE_STATS";
/// Time of the last write call per (tgid, fd), shared by all CPUs.
pub const LAST_WRITE: &str = "LAST_WRITE";
/// Command name of each process the first time one of its fds is tracked.
pub const PROCESS_COMMS: &str = "PROCESS_COMMS";
/// Per-CPU counters of what the kernel side could not record, indexed by
/// [`ProbeErrorKind`].
pub const PROBE_ERRORS: &str = "PROBE_ERRORS";

/// Sync statistics per (tgid, fd), shared by all CPUs ([`crate::sync::SyncStats`]).
pub const SYNC_STATS: &str = "SYNC_STATS";
/// Where each (tgid, fd)'s previous sync left it ([`crate::sync::SyncMark`]).
pub const SYNC_MARKS: &str = "SYNC_MARKS";
/// Entry time of each thread's sync call under way, by thread id.
pub const SYNC_STARTS: &str = "SYNC_STARTS";

/// io_uring_enter calls per (tgid, ring fd).
pub const URING_ENTERS: &str = "URING_ENTERS";
/// SQEs and CQEs per (tgid, ring context).
pub const URING_OPS: &str = "URING_OPS";
/// Ring set-ups by ring context.
pub const URING_RINGS: &str = "URING_RINGS";
/// Failed completions per (ring, errno).
pub const URING_CQE_ERRORS: &str = "URING_CQE_ERRORS";
/// The ring each thread last submitted to, to resolve registered ring indexes.
pub const URING_SUBMITTING: &str = "URING_SUBMITTING";
/// io_uring_setup outcomes per tgid.
pub const URING_SETUPS: &str = "URING_SETUPS";

/// Processes whose last thread exited, kept by the probes until the agent
/// has read and retired them.
pub const EXITED: &str = "EXITED";
/// Tracked processes that exec'd, kept by the probes until the agent has
/// read their new identity.
pub const EXECED: &str = "EXECED";

/// Load-time global: the agent's own tgid, whose writes are not counted.
pub const GLOBAL_SELF_TGID: &str = "SELF_TGID";

indexed_enum! {
    /// The kinds of probe error: what the kernel side could not record. The
    /// discriminant indexes the per-CPU `PROBE_ERRORS` array; the agent sums
    /// them into its `ProbeErrors`. The names are the values of the
    /// `batchwatch.probe.error` attribute.
    pub enum ProbeErrorKind {
        /// A new (tgid, fd) could not be inserted: `WRITE_STATS` is full.
        StatsMapFull = 0 => "stats_map_full",
        /// A call's iovecs or message headers could not be read from user memory;
        /// its requested bytes were taken from its result.
        ArgsUnreadable = 1 => "args_unreadable",
        /// A new ring or ring fd could not be inserted: an io_uring map is full.
        UringMapFull = 2 => "uring_map_full",
        /// A tracked process's exit could not be recorded: `EXITED` is full.
        ExitMapFull = 3 => "exit_map_full",
        /// A tracked process's exec could not be recorded: `EXECED` is full.
        ExecMapFull = 4 => "exec_map_full",
        /// An `io_uring_enter` on a registered ring whose ring could not be
        /// told (no SQE submitted by its thread yet, or a ring set up before
        /// the probes loaded): not counted.
        RingIndexUnresolved = 5 => "ring_index_unresolved",
        /// A call's arguments asked for more than the kernel ever accepts (a
        /// count above `MAX_RW_COUNT`, an `iovcnt` or `vlen` above
        /// `UIO_MAXIOV`): the probe counted it clamped to that limit.
        ArgsClamped = 6 => "args_clamped",
        /// A 32-bit (ia32 compat) call of a traced syscall, which the
        /// raw-tracepoint mode skips: its numbers and arguments are not the
        /// 64-bit ones its dispatch reads.
        CompatSkipped = 7 => "compat_skipped",
        /// Calls the kernel ran no program for, because it (or another BPF
        /// program) was already running on that CPU: the programs' own
        /// `recursion_misses`, which the agent reads from their fdinfo (this
        /// kind's `PROBE_ERRORS` slot is never written).
        RecursionMisses = 8 => "recursion_misses",
        /// Exits the kernel did not tell (the process had left its maps, or
        /// EXITED was full), found by the agent's `/proc` sweep: the process
        /// gone, or its pid taken by another (this kind's `PROBE_ERRORS` slot
        /// is never written).
        ExitsMissed = 9 => "exits_missed",
        /// A sync could not be recorded: `SYNC_STATS` or `SYNC_MARKS` is full,
        /// or (its duration only) `SYNC_STARTS` was full at its entry.
        SyncMapFull = 10 => "sync_map_full",
    }
}
