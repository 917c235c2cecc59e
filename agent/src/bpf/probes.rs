//! Loading the kernel programs and attaching them.
//!
//! Syscall exits are hooked in one of three ways (see the kernel side's
//! `probes/syscalls.rs`): fexit, which costs untraced syscalls nothing, where
//! the kernel allows it; otherwise classic tracepoints, each attached on its
//! own, so one the kernel lacks is reported by name and the others still
//! run; or, on request, one BTF tracepoint on every syscall exit. The
//! io_uring events are always classic tracepoints: they are not syscalls.
//!
//! The programs stay attached for as long as [`Probes`] lives; dropping it
//! (or the process dying, even by SIGKILL) detaches them: nothing is pinned.

use agent_common::{
    io_uring::{CqeErrorKey, EnterStats, RingKey, RingOpStats, RingSetup, SetupStats},
    key::FdKey,
    maps,
    write::WriteStats,
};
use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, FExit, Program, ProgramError, TracePoint},
};

use crate::config::{AttachPreference, MapLimits};

/// The kernel object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/batchwatch"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel refused the maps or the object is malformed.
    #[error("the kernel refused batchwatch's BPF object: {0}")]
    Load(#[source] EbpfError),
    /// Not one probe could be attached.
    #[error("no probe could be attached: {0}")]
    NothingAttached(String),
    /// The attach type asked for in the configuration was refused.
    #[error("the kernel refused the `{0}` attach type asked for (config key `attach`): {1}")]
    Refused(&'static str, String),
    /// A map the agent reads is missing or of another type.
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// A tracepoint that could not be attached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachFailure {
    pub tracepoint: String,
    pub reason: String,
}

/// The loaded object and what got attached.
pub struct Probes {
    ebpf: Ebpf,
    pub mode: AttachMode,
    /// Why the preferred attach type was not used, if it was not.
    pub fallback: Option<String>,
    /// Each attached probe: `category:name` of a tracepoint, `fexit:function`.
    pub attached: Vec<String>,
    pub failed: Vec<AttachFailure>,
}

/// The maps the probes fill, owned by the collector.
pub struct Maps {
    pub write_stats: PerCpuHashMap<MapData, FdKey, WriteStats>,
    pub last_write: HashMap<MapData, FdKey, u64>,
    pub comms: HashMap<MapData, u32, [u8; 16]>,
    pub probe_errors: PerCpuArray<MapData, u64>,
    pub uring_enters: PerCpuHashMap<MapData, FdKey, EnterStats>,
    pub uring_ops: PerCpuHashMap<MapData, RingKey, RingOpStats>,
    pub uring_rings: HashMap<MapData, u64, RingSetup>,
    pub uring_cqe_errors: PerCpuHashMap<MapData, CqeErrorKey, u64>,
    pub uring_setups: PerCpuHashMap<MapData, u32, SetupStats>,
    pub exited: HashMap<MapData, u32, u8>,
}

/// A traced syscall: its `syscalls:sys_exit_*` tracepoint program (named
/// like the tracepoint) and its fexit program on the kernel function.
struct SyscallProbe {
    tracepoint: &'static str,
    fexit: &'static str,
    function: &'static str,
}

const fn syscall(tracepoint: &'static str, fexit: &'static str, function: &'static str) -> SyscallProbe {
    SyscallProbe { tracepoint, fexit, function }
}

const SYSCALLS: [SyscallProbe; 10] = [
    syscall("sys_exit_write", "fexit_write", "__x64_sys_write"),
    syscall("sys_exit_writev", "fexit_writev", "__x64_sys_writev"),
    syscall("sys_exit_pwrite64", "fexit_pwrite64", "__x64_sys_pwrite64"),
    syscall("sys_exit_pwritev", "fexit_pwritev", "__x64_sys_pwritev"),
    syscall("sys_exit_pwritev2", "fexit_pwritev2", "__x64_sys_pwritev2"),
    syscall("sys_exit_sendto", "fexit_sendto", "__x64_sys_sendto"),
    syscall("sys_exit_sendmsg", "fexit_sendmsg", "__x64_sys_sendmsg"),
    syscall("sys_exit_sendmmsg", "fexit_sendmmsg", "__x64_sys_sendmmsg"),
    syscall("sys_exit_io_uring_enter", "fexit_io_uring_enter", "__x64_sys_io_uring_enter"),
    syscall("sys_exit_io_uring_setup", "fexit_io_uring_setup", "__x64_sys_io_uring_setup"),
];

/// The io_uring tracepoints, each with a program named like it.
const IO_URING_EVENTS: [&str; 6] = [
    "io_uring_create",
    "io_uring_submit_req",
    "io_uring_complete",
    "io_uring_cqe_overflow",
    "io_uring_req_failed",
    "io_uring_short_write",
];

/// The tracepoint that tells the agent which processes exited.
const PROCESS_EXIT: (&str, &str) = ("sched", "sched_process_exit");

/// The BTF tracepoint program on every syscall exit.
const RAW_SYS_EXIT: &str = "raw_sys_exit";

/// How syscall exits ended up hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Fexit,
    Tracepoint,
    RawTracepoint,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Fexit => "fexit",
            AttachMode::Tracepoint => "tracepoint",
            AttachMode::RawTracepoint => "raw-tracepoint",
        }
    }
}

impl Probes {
    /// Loads the object, sized by `limits`, and attaches every probe it can,
    /// hooking syscall exits as `attach` prefers.
    pub fn load(limits: &MapLimits, attach: AttachPreference) -> Result<Probes, ProbeError> {
        let self_tgid = std::process::id();
        let ebpf = EbpfLoader::new()
            .override_global(maps::GLOBAL_SELF_TGID, &self_tgid, true)
            .map_max_entries(maps::WRITE_STATS, limits.max_fds)
            .map_max_entries(maps::LAST_WRITE, limits.max_fds)
            .map_max_entries(maps::PROCESS_COMMS, limits.max_processes)
            .map_max_entries(maps::URING_ENTERS, limits.max_rings)
            .map_max_entries(maps::URING_OPS, limits.max_rings)
            .map_max_entries(maps::URING_RINGS, limits.max_rings)
            .map_max_entries(maps::URING_CQE_ERRORS, limits.max_rings)
            .map_max_entries(maps::URING_SETUPS, limits.max_rings)
            .map_max_entries(maps::EXITED, limits.max_processes)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        let mut probes =
            Probes { ebpf, mode: AttachMode::Tracepoint, fallback: None, attached: Vec::new(), failed: Vec::new() };
        probes.hook_syscalls(attach)?;
        for event in IO_URING_EVENTS {
            probes.attach_tracepoint("io_uring", event);
        }
        probes.attach_tracepoint(PROCESS_EXIT.0, PROCESS_EXIT.1);
        if probes.attached.is_empty() {
            let reasons: Vec<_> = probes.failed.iter().map(|f| format!("{}: {}", f.tracepoint, f.reason)).collect();
            return Err(ProbeError::NothingAttached(reasons.join("; ")));
        }
        Ok(probes)
    }

    fn hook_syscalls(&mut self, attach: AttachPreference) -> Result<(), ProbeError> {
        match attach {
            AttachPreference::Auto => {
                if let Err(reason) = self.attach_fexit() {
                    self.fallback = Some(format!("fexit refused ({reason}); using tracepoints"));
                    self.attach_syscall_tracepoints();
                }
            }
            AttachPreference::Fexit => self.attach_fexit().map_err(|reason| ProbeError::Refused("fexit", reason))?,
            AttachPreference::Tracepoint => self.attach_syscall_tracepoints(),
            AttachPreference::RawTracepoint => {
                let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Refused("raw-tracepoint", e.to_string()))?;
                let program: &mut BtfTracePoint = program(&mut self.ebpf, RAW_SYS_EXIT)
                    .map_err(|reason| ProbeError::Refused("raw-tracepoint", reason))?;
                program.load("sys_exit", &btf).map_err(|e| ProbeError::Refused("raw-tracepoint", describe(&e)))?;
                program.attach().map_err(|e| ProbeError::Refused("raw-tracepoint", describe(&e)))?;
                self.mode = AttachMode::RawTracepoint;
                self.attached.push("tp_btf:sys_exit".to_owned());
            }
        }
        Ok(())
    }

    /// Hooks every syscall with fexit, or none: one refused means the
    /// kernel refuses fexit, and the ones loaded so far are unloaded.
    fn attach_fexit(&mut self) -> Result<(), String> {
        let btf = Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
        let mut loaded = Vec::new();
        let result = SYSCALLS.iter().try_for_each(|probe| {
            let program: &mut FExit = program(&mut self.ebpf, probe.fexit)?;
            program.load(probe.function, &btf).map_err(|e| format!("{}: {}", probe.function, describe(&e)))?;
            loaded.push(probe);
            program.attach().map_err(|e| format!("{}: {}", probe.function, describe(&e)))?;
            Ok(())
        });
        if let Err(reason) = result {
            for probe in loaded {
                if let Ok(program) = program::<FExit>(&mut self.ebpf, probe.fexit) {
                    // Unloading detaches it; failing to is harmless here.
                    let _ = program.unload();
                }
            }
            return Err(reason);
        }
        self.mode = AttachMode::Fexit;
        self.attached.extend(SYSCALLS.iter().map(|probe| format!("fexit:{}", probe.function)));
        Ok(())
    }

    fn attach_syscall_tracepoints(&mut self) {
        self.mode = AttachMode::Tracepoint;
        for probe in &SYSCALLS {
            self.attach_tracepoint("syscalls", probe.tracepoint);
        }
    }

    /// Attaches the program named like its tracepoint, noting the outcome.
    fn attach_tracepoint(&mut self, category: &str, name: &str) {
        let tracepoint = format!("{category}:{name}");
        let result = program::<TracePoint>(&mut self.ebpf, name).and_then(|program| {
            program.load().map_err(|e| describe(&e))?;
            program.attach(category, name).map_err(|e| describe(&e))?;
            Ok(())
        });
        match result {
            Ok(()) => self.attached.push(tracepoint),
            Err(reason) => self.failed.push(AttachFailure { tracepoint, reason }),
        }
    }

    /// Whether the kernel tells exits (else the agent checks `/proc`).
    pub fn tracks_exits(&self) -> bool {
        let name = format!("{}:{}", PROCESS_EXIT.0, PROCESS_EXIT.1);
        self.attached.contains(&name)
    }

    /// Hands the maps over; call once.
    pub fn take_maps(&mut self) -> Result<Maps, ProbeError> {
        let ebpf = &mut self.ebpf;
        Ok(Maps {
            write_stats: take(ebpf, maps::WRITE_STATS)?,
            last_write: take(ebpf, maps::LAST_WRITE)?,
            comms: take(ebpf, maps::PROCESS_COMMS)?,
            probe_errors: take(ebpf, maps::PROBE_ERRORS)?,
            uring_enters: take(ebpf, maps::URING_ENTERS)?,
            uring_ops: take(ebpf, maps::URING_OPS)?,
            uring_rings: take(ebpf, maps::URING_RINGS)?,
            uring_cqe_errors: take(ebpf, maps::URING_CQE_ERRORS)?,
            uring_setups: take(ebpf, maps::URING_SETUPS)?,
            exited: take(ebpf, maps::EXITED)?,
        })
    }
}

fn take<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map =
        ebpf.take_map(name).ok_or(ProbeError::Map { name, source: MapError::InvalidName { name: name.into() } })?;
    M::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

/// The program `name` of the object, as type `P`; the error is one line.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("no program {name} in the object"))?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())
}

/// One line for a program error: the verifier's log goes to the debug log.
fn describe(error: &ProgramError) -> String {
    match error {
        ProgramError::LoadError { io_error, verifier_log } => {
            tracing::debug!(%verifier_log, "verifier log");
            format!("the kernel refused to load it: {io_error}")
        }
        other => with_causes(other),
    }
}

/// An error and its causes on one line: aya's errors keep the interesting
/// part (the errno) in their sources.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
