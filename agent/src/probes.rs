//! Loading the kernel programs and attaching them.
//!
//! Each tracepoint is attached on its own: one the kernel lacks or refuses is
//! reported by name and the others still run. The programs stay attached for
//! as long as [`Probes`] lives; dropping it (or the process dying, even by
//! SIGKILL) detaches them, since nothing is pinned.

use agent_common::{
    io_uring::{CqeErrorKey, EnterStats, RingKey, RingOpStats, RingSetup, SetupStats},
    key::FdKey,
    maps,
    write::{WriteStats, WriteSyscall},
};
use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, TracePoint},
};

use crate::config::MapLimits;

/// The kernel object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/batchwatch"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel refused the maps or the object is malformed.
    #[error("the kernel refused batchwatch's BPF object: {0}")]
    Load(#[source] EbpfError),
    /// Not one tracepoint could be attached.
    #[error("no tracepoint could be attached: {0}")]
    NothingAttached(String),
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
    /// `category:name` of each attached tracepoint.
    pub attached: Vec<String>,
    pub failed: Vec<AttachFailure>,
}

/// The maps the probes fill, owned by the collector.
pub struct Maps {
    pub write_stats: PerCpuHashMap<MapData, FdKey, WriteStats>,
    pub last_write: HashMap<MapData, FdKey, u64>,
    pub comms: HashMap<MapData, u32, [u8; 16]>,
    pub misses: PerCpuArray<MapData, u64>,
    pub uring_enters: PerCpuHashMap<MapData, FdKey, EnterStats>,
    pub uring_ops: PerCpuHashMap<MapData, RingKey, RingOpStats>,
    pub uring_rings: HashMap<MapData, u64, RingSetup>,
    pub uring_cqe_errors: PerCpuHashMap<MapData, CqeErrorKey, u64>,
    pub uring_setups: PerCpuHashMap<MapData, u32, SetupStats>,
}

/// Every tracepoint, as (category, name); each program is named like its
/// tracepoint.
fn tracepoints() -> impl Iterator<Item = (&'static str, String)> {
    let write_family = WriteSyscall::ALL.into_iter().map(|s| ("syscalls", format!("sys_exit_{}", s.name())));
    let io_uring = [
        ("syscalls", "sys_exit_io_uring_setup"),
        ("syscalls", "sys_exit_io_uring_enter"),
        ("io_uring", "io_uring_create"),
        ("io_uring", "io_uring_submit_req"),
        ("io_uring", "io_uring_complete"),
        ("io_uring", "io_uring_cqe_overflow"),
        ("io_uring", "io_uring_req_failed"),
        ("io_uring", "io_uring_short_write"),
    ]
    .into_iter()
    .map(|(category, name)| (category, name.to_owned()));
    write_family.chain(io_uring)
}

impl Probes {
    /// Loads the object, sized by `limits`, and attaches every probe it can.
    pub fn load(limits: &MapLimits) -> Result<Probes, ProbeError> {
        let self_tgid = std::process::id();
        let ebpf = EbpfLoader::new()
            .override_global(maps::GLOBAL_SELF_TGID, &self_tgid, true)
            .map_max_entries(maps::WRITE_STATS, limits.max_fds)
            .map_max_entries(maps::LAST_WRITE, limits.max_fds)
            .map_max_entries(maps::PROCESS_COMMS, limits.max_processes)
            .map_max_entries(maps::URING_SETUPS, limits.max_processes)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        let mut probes = Probes { ebpf, attached: Vec::new(), failed: Vec::new() };
        for (category, name) in tracepoints() {
            probes.attach(category, &name);
        }
        if probes.attached.is_empty() {
            let reasons: Vec<_> = probes.failed.iter().map(|f| format!("{}: {}", f.tracepoint, f.reason)).collect();
            return Err(ProbeError::NothingAttached(reasons.join("; ")));
        }
        Ok(probes)
    }

    /// Attaches the program named like its tracepoint, noting the outcome.
    fn attach(&mut self, category: &str, name: &str) {
        let tracepoint = format!("{category}:{name}");
        match attach_tracepoint(&mut self.ebpf, category, name) {
            Ok(()) => self.attached.push(tracepoint),
            Err(reason) => self.failed.push(AttachFailure { tracepoint, reason }),
        }
    }

    /// Hands the maps over; call once.
    pub fn take_maps(&mut self) -> Result<Maps, ProbeError> {
        let ebpf = &mut self.ebpf;
        Ok(Maps {
            write_stats: take(ebpf, maps::WRITE_STATS)?,
            last_write: take(ebpf, maps::LAST_WRITE)?,
            comms: take(ebpf, maps::PROCESS_COMMS)?,
            misses: take(ebpf, maps::PROBE_ERRORS)?,
            uring_enters: take(ebpf, maps::URING_ENTERS)?,
            uring_ops: take(ebpf, maps::URING_OPS)?,
            uring_rings: take(ebpf, maps::URING_RINGS)?,
            uring_cqe_errors: take(ebpf, maps::URING_CQE_ERRORS)?,
            uring_setups: take(ebpf, maps::URING_SETUPS)?,
        })
    }
}

fn take<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, ProbeError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::Map { name, source: MapError::InvalidName { name: name.into() } })?;
    M::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

/// Loads and attaches one tracepoint program; the error is one line.
fn attach_tracepoint(ebpf: &mut Ebpf, category: &str, name: &str) -> Result<(), String> {
    let program: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or("no such program in the object")?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())?;
    program.load().map_err(|e| describe(&e))?;
    program.attach(category, name).map_err(|e| describe(&e))?;
    Ok(())
}

/// One line for a program error: the verifier's log goes to the debug log.
fn describe(error: &ProgramError) -> String {
    match error {
        ProgramError::LoadError { io_error, verifier_log } => {
            tracing::debug!(%verifier_log, "verifier log");
            format!("the kernel refused to load it: {io_error}")
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}
