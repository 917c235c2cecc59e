//! Loading the kernel programs and attaching them.
//!
//! Syscall exits are hooked in one of three ways (see the kernel side's
//! `probes/syscalls.rs`): fexit, which costs untraced syscalls nothing, where
//! the kernel allows it; otherwise classic tracepoints, each attached on its
//! own, so one the kernel lacks is reported by name and the others still
//! run; or, on request, one BTF tracepoint on every syscall exit. The
//! io_uring events are always classic tracepoints: they are not syscalls.
//!
//! Which programs there are, and where each hooks, is read from the object
//! ([`super::programs`]): no program name is written here.
//!
//! The programs stay attached for as long as [`Probes`] lives; dropping it
//! (or the process dying, even by SIGKILL) detaches them: nothing is pinned.

use std::os::fd::AsFd as _;

use agent_common::{
    io_uring::{CqeErrorKey, EnterStats, RingKey, RingOpStats, RingSetup, SetupStats},
    key::FdKey,
    maps,
    sync::{SyncMark, SyncStats},
    write::WriteEntry,
};
use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{BtfTracePoint, FEntry, FExit, Program, ProgramError, TracePoint},
};

use super::{
    program_stats,
    programs::{self, Hook, ObjectProgram},
};
use crate::{
    config::{AttachPreference, MapLimits},
    error_chain::error_chain,
};

/// The kernel object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/batchwatch"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The kernel refused the maps or the object is malformed.
    #[error("the kernel refused batchwatch's BPF object: {0}")]
    Load(#[source] EbpfError),
    /// The object's programs could not be listed from its ELF sections.
    #[error("reading the programs of batchwatch's BPF object: {0}")]
    Object(#[source] object::Error),
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
    /// A loaded program's statistics (its fdinfo) could not be read.
    #[error("reading the statistics of program {program}: {source}")]
    ProgramStats {
        program: String,
        #[source]
        source: std::io::Error,
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
    pub write_stats: HashMap<MapData, FdKey, WriteEntry>,
    pub last_write: HashMap<MapData, FdKey, u64>,
    pub sync_stats: HashMap<MapData, FdKey, SyncStats>,
    pub sync_marks: HashMap<MapData, FdKey, SyncMark>,
    pub comms: HashMap<MapData, u32, [u8; 16]>,
    pub probe_errors: PerCpuArray<MapData, u64>,
    pub uring_enters: HashMap<MapData, FdKey, EnterStats>,
    pub uring_ops: HashMap<MapData, RingKey, RingOpStats>,
    pub uring_rings: HashMap<MapData, u64, RingSetup>,
    pub uring_cqe_errors: HashMap<MapData, CqeErrorKey, u64>,
    pub uring_setups: HashMap<MapData, u32, SetupStats>,
    pub exited: HashMap<MapData, u32, u8>,
    pub execed: HashMap<MapData, u32, u8>,
}

/// The tracepoint category of the syscall exits: its programs are one of
/// three alternative hooks for them, the others fexit and `tp_btf/sys_exit`.
const SYSCALLS: &str = "syscalls";

/// The tracepoint that tells the agent which processes exited.
const PROCESS_EXIT: (&str, &str) = ("sched", "sched_process_exit");

/// The raw event the BTF tracepoint alternative hooks: every syscall exit.
const RAW_SYS_EXIT: &str = "sys_exit";

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
            .map_max_entries(maps::URING_SUBMITTING, limits.max_rings)
            .map_max_entries(maps::EXITED, limits.max_processes)
            .map_max_entries(maps::EXECED, limits.max_processes)
            .map_max_entries(maps::SYNC_STATS, limits.max_fds)
            .map_max_entries(maps::SYNC_MARKS, limits.max_fds)
            // One entry per thread inside a sync at once.
            .map_max_entries(maps::SYNC_STARTS, limits.max_processes)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        let programs = programs::programs(OBJECT).map_err(ProbeError::Object)?;
        let mut probes =
            Probes { ebpf, mode: AttachMode::Tracepoint, fallback: None, attached: Vec::new(), failed: Vec::new() };
        probes.hook_syscalls(attach, &programs)?;
        for program in &programs {
            match &program.hook {
                Hook::Tracepoint { category, name } if category != SYSCALLS => {
                    probes.attach_tracepoint(&program.name, category, name);
                }
                Hook::Unknown { section } => probes.failed.push(AttachFailure {
                    tracepoint: format!("{} ({section})", program.name),
                    reason: "the agent has no rule to attach this kind of program".to_owned(),
                }),
                // Syscall exits: one of the alternatives, hooked above.
                Hook::Tracepoint { .. } | Hook::Fexit { .. } | Hook::Fentry { .. } | Hook::BtfTracepoint { .. } => {}
            }
        }
        if probes.attached.is_empty() {
            let reasons: Vec<_> = probes.failed.iter().map(|f| format!("{}: {}", f.tracepoint, f.reason)).collect();
            return Err(ProbeError::NothingAttached(reasons.join("; ")));
        }
        Ok(probes)
    }

    fn hook_syscalls(&mut self, attach: AttachPreference, programs: &[ObjectProgram]) -> Result<(), ProbeError> {
        match attach {
            AttachPreference::Auto => {
                if let Err(reason) = self.attach_fexit(programs) {
                    self.fallback = Some(format!("fexit refused ({reason}); using tracepoints"));
                    self.attach_syscall_tracepoints(programs);
                }
            }
            AttachPreference::Fexit => {
                self.attach_fexit(programs).map_err(|reason| ProbeError::Refused("fexit", reason))?;
            }
            AttachPreference::Tracepoint => self.attach_syscall_tracepoints(programs),
            AttachPreference::RawTracepoint => {
                self.attach_raw_sys_exit(programs).map_err(|reason| ProbeError::Refused("raw-tracepoint", reason))?;
            }
        }
        Ok(())
    }

    /// Hooks every syscall exit with the one BTF tracepoint on `sys_exit`,
    /// and sync entries with the one on `sys_enter`.
    fn attach_raw_sys_exit(&mut self, programs: &[ObjectProgram]) -> Result<(), String> {
        if !programs.iter().any(|p| matches!(&p.hook, Hook::BtfTracepoint { event } if event == RAW_SYS_EXIT)) {
            return Err(format!("no tp_btf/{RAW_SYS_EXIT} program in the object"));
        }
        let btf = Btf::from_sys_fs().map_err(|e| e.to_string())?;
        for p in programs {
            let Hook::BtfTracepoint { event } = &p.hook else { continue };
            let program: &mut BtfTracePoint = program(&mut self.ebpf, &p.name)?;
            program.load(event, &btf).map_err(|e| format!("{event}: {}", describe(&e)))?;
            program.attach().map_err(|e| format!("{event}: {}", describe(&e)))?;
            self.attached.push(format!("tp_btf:{event}"));
        }
        self.mode = AttachMode::RawTracepoint;
        Ok(())
    }

    /// Hooks every syscall with fexit (and sync entries with fentry), or
    /// none: one refused means the kernel refuses them, and the ones loaded
    /// so far are unloaded.
    fn attach_fexit(&mut self, programs: &[ObjectProgram]) -> Result<(), String> {
        let trampolines: Vec<(&str, &str, &'static str)> = programs
            .iter()
            .filter_map(|p| match &p.hook {
                Hook::Fexit { function } => Some((p.name.as_str(), function.as_str(), "fexit")),
                Hook::Fentry { function } => Some((p.name.as_str(), function.as_str(), "fentry")),
                _ => None,
            })
            .collect();
        let btf = Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
        let mut loaded = Vec::new();
        let result = trampolines.iter().try_for_each(|&(name, function, kind)| {
            let failed = |e: ProgramError| format!("{kind} {function}: {}", describe(&e));
            if kind == "fentry" {
                let program: &mut FEntry = program(&mut self.ebpf, name)?;
                program.load(function, &btf).map_err(failed)?;
                loaded.push((name, kind));
                program.attach().map_err(failed)?;
            } else {
                let program: &mut FExit = program(&mut self.ebpf, name)?;
                program.load(function, &btf).map_err(failed)?;
                loaded.push((name, kind));
                program.attach().map_err(failed)?;
            }
            Ok(())
        });
        if let Err(reason) = result {
            // Unloading detaches them; failing to is harmless here.
            for (name, kind) in loaded {
                if kind == "fentry" {
                    if let Ok(program) = program::<FEntry>(&mut self.ebpf, name) {
                        let _ = program.unload();
                    }
                } else if let Ok(program) = program::<FExit>(&mut self.ebpf, name) {
                    let _ = program.unload();
                }
            }
            return Err(reason);
        }
        self.mode = AttachMode::Fexit;
        self.attached.extend(trampolines.iter().map(|(_, function, kind)| format!("{kind}:{function}")));
        Ok(())
    }

    fn attach_syscall_tracepoints(&mut self, programs: &[ObjectProgram]) {
        self.mode = AttachMode::Tracepoint;
        for program in programs {
            if let Hook::Tracepoint { category, name } = &program.hook
                && category == SYSCALLS
            {
                self.attach_tracepoint(&program.name, category, name);
            }
        }
    }

    /// Attaches program `program_name` to tracepoint `category:name`,
    /// noting the outcome.
    fn attach_tracepoint(&mut self, program_name: &str, category: &str, name: &str) {
        let tracepoint = format!("{category}:{name}");
        let result = program::<TracePoint>(&mut self.ebpf, program_name).and_then(|program| {
            program.load().map_err(|e| describe(&e))?;
            program.attach(category, name).map_err(|e| describe(&e))?;
            Ok(())
        });
        match result {
            Ok(()) => self.attached.push(tracepoint),
            Err(reason) => self.failed.push(AttachFailure { tracepoint, reason }),
        }
    }

    /// Calls the kernel skipped, summed over every loaded program (see
    /// [`program_stats`]); a program whose fdinfo cannot be read is named
    /// in the error.
    pub fn recursion_misses(&self) -> Result<u64, ProbeError> {
        let mut misses = 0;
        for (name, program) in self.ebpf.programs() {
            // Programs not loaded (another attach mode's) have no descriptor.
            let Ok(fd) = program.fd() else { continue };
            misses += program_stats::recursion_misses(&fd.as_fd())
                .map_err(|source| ProbeError::ProgramStats { program: name.to_owned(), source })?;
        }
        Ok(misses)
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
            sync_stats: take(ebpf, maps::SYNC_STATS)?,
            sync_marks: take(ebpf, maps::SYNC_MARKS)?,
            comms: take(ebpf, maps::PROCESS_COMMS)?,
            probe_errors: take(ebpf, maps::PROBE_ERRORS)?,
            uring_enters: take(ebpf, maps::URING_ENTERS)?,
            uring_ops: take(ebpf, maps::URING_OPS)?,
            uring_rings: take(ebpf, maps::URING_RINGS)?,
            uring_cqe_errors: take(ebpf, maps::URING_CQE_ERRORS)?,
            uring_setups: take(ebpf, maps::URING_SETUPS)?,
            exited: take(ebpf, maps::EXITED)?,
            execed: take(ebpf, maps::EXECED)?,
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
        other => error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::Config;

    /// How `attached` names the hook of `program`.
    fn hook_name(program: &ObjectProgram) -> String {
        match &program.hook {
            Hook::Tracepoint { category, name } => format!("{category}:{name}"),
            Hook::Fexit { function } => format!("fexit:{function}"),
            Hook::Fentry { function } => format!("fentry:{function}"),
            Hook::BtfTracepoint { event } => format!("tp_btf:{event}"),
            Hook::Unknown { section } => {
                panic!("{} is in section {section}, which the loader cannot attach", program.name)
            }
        }
    }

    /// Whether `program` hooks syscall exits in attach mode `mode`, or is
    /// one of the alternatives to it.
    fn in_mode(program: &ObjectProgram, mode: AttachMode) -> bool {
        match (&program.hook, mode) {
            (Hook::Tracepoint { category, .. }, AttachMode::Tracepoint) if category == SYSCALLS => true,
            (Hook::Tracepoint { category, .. }, _) => category != SYSCALLS,
            (Hook::Fexit { .. } | Hook::Fentry { .. }, AttachMode::Fexit)
            | (Hook::BtfTracepoint { .. }, AttachMode::RawTracepoint) => true,
            _ => false,
        }
    }

    /// A program added to the eBPF crate is attached without a second list
    /// here: in every attach mode the kernel allows, exactly the programs of
    /// that mode (and every tracepoint outside `syscalls`) are attached, and
    /// each program aya finds in the object is attached in one of the modes.
    #[test]
    fn every_program_in_the_object_is_attached() {
        let programs = programs::programs(OBJECT).expect("the object's programs");
        let limits = Config::default().maps;
        let mut attached_somewhere = BTreeSet::new();
        for (attach, mode) in [
            (AttachPreference::Tracepoint, AttachMode::Tracepoint),
            (AttachPreference::RawTracepoint, AttachMode::RawTracepoint),
            (AttachPreference::Fexit, AttachMode::Fexit),
        ] {
            let probes = match Probes::load(&limits, attach) {
                Ok(probes) => probes,
                // These machines refuse fexit; real nodes usually allow it.
                Err(ProbeError::Refused(kind, reason)) => {
                    eprintln!("skipping the {kind} mode, refused here: {reason}");
                    continue;
                }
                Err(error) => panic!("loading the probes ({attach:?}; these tests need root): {error}"),
            };
            let in_object: BTreeSet<&str> = probes.ebpf.programs().map(|(name, _)| name).collect();
            let listed: BTreeSet<&str> = programs.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(listed, in_object, "the programs read from the ELF sections are the ones aya loads");
            assert_eq!(probes.failed, [], "{mode:?}");
            let expected: BTreeSet<String> = programs.iter().filter(|p| in_mode(p, mode)).map(hook_name).collect();
            let attached: BTreeSet<String> = probes.attached.iter().cloned().collect();
            assert_eq!(attached, expected, "{mode:?}");
            assert_eq!(probes.attached.len(), expected.len(), "each attached once, {mode:?}");
            attached_somewhere.extend(programs.iter().filter(|p| in_mode(p, mode)).map(|p| p.name.clone()));
        }
        // fexit and fentry programs go unattached where the kernel refuses them.
        let never: Vec<_> = programs
            .iter()
            .filter(|p| {
                !attached_somewhere.contains(&p.name) && !matches!(p.hook, Hook::Fexit { .. } | Hook::Fentry { .. })
            })
            .collect();
        assert!(never.is_empty(), "programs no attach mode attaches: {never:?}");
    }
}
