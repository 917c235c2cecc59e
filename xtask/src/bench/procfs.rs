//! What the benchmark reads about processes and BPF objects: CPU time and
//! memory from /proc, a process's BPF maps and programs from the fdinfo of
//! its descriptors, names and the programs of other processes from bpftool.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// CPU time a process has used, and when it was read.
#[derive(Clone, Copy)]
pub struct CpuReading {
    ticks: u64,
    at: Instant,
}

impl CpuReading {
    /// utime + stime of every thread of `pid` (fields 14 and 15 of /proc/PID/stat).
    pub fn of(pid: u32) -> anyhow::Result<CpuReading> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses: count from the last ')'.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("no ')' in /proc/PID/stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
        let field = |n: usize| -> anyhow::Result<u64> {
            fields.get(n - 3).context("short /proc/PID/stat")?.parse().context("a non-numeric /proc/PID/stat field")
        };
        Ok(CpuReading { ticks: field(14)? + field(15)?, at: Instant::now() })
    }

    /// Percent of one core used between `earlier` and `self`.
    pub fn percent_since(&self, earlier: &CpuReading, ticks_per_second: f64) -> f64 {
        let cpu_seconds = self.ticks.saturating_sub(earlier.ticks) as f64 / ticks_per_second;
        100.0 * cpu_seconds / self.at.duration_since(earlier.at).as_secs_f64()
    }
}

/// `getconf CLK_TCK`: the unit of /proc/PID/stat's CPU times.
pub fn ticks_per_second() -> anyhow::Result<f64> {
    let text = cmd::read(Command::new("getconf").arg("CLK_TCK"))?;
    text.trim().parse().with_context(|| format!("`getconf CLK_TCK` printed {text:?}"))
}

/// Resident memory of a process now and at its peak, in KiB.
#[derive(Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            let line = status.lines().find_map(|line| line.strip_prefix(key)).with_context(|| format!("no {key}"))?;
            line.trim().trim_end_matches("kB").trim().parse().with_context(|| format!("reading {key}"))
        };
        Ok(Memory { rss_kib: kib("VmRSS:")?, hwm_kib: kib("VmHWM:")? })
    }
}

/// One BPF map a process holds, from the fdinfo of its descriptor.
#[derive(Clone, Debug)]
pub struct MapInfo {
    pub id: u32,
    pub name: String,
    pub kind: String,
    pub key_size: u64,
    pub value_size: u64,
    pub max_entries: u64,
    pub flags: u64,
    /// What the kernel charges for it now (`memlock` in fdinfo).
    pub memlock: u64,
}

impl MapInfo {
    /// Whether every possible CPU has its own copy of each value.
    pub fn per_cpu(&self) -> bool {
        self.kind.starts_with("percpu") || self.kind.starts_with("lru_percpu")
    }

    /// Whether entries are allocated as they are inserted (BPF_F_NO_PREALLOC),
    /// so that the memory used grows with the entries.
    pub fn grows(&self) -> bool {
        const BPF_F_NO_PREALLOC: u64 = 1;
        self.kind.contains("hash") && !self.kind.contains("lru") && self.flags & BPF_F_NO_PREALLOC != 0
    }

    /// Keys and values at full capacity: (key + value × copies) × max_entries.
    pub fn payload_bound(&self, possible_cpus: u64) -> u64 {
        let copies = if self.per_cpu() { possible_cpus } else { 1 };
        (self.key_size + self.value_size * copies) * self.max_entries
    }
}

/// One BPF program a process holds, with its statistics (which the kernel
/// only keeps while `kernel.bpf_stats_enabled` is 1).
#[derive(Clone, Debug)]
pub struct ProgInfo {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The BPF objects of kind `object` (`map` or `prog`) that `pid` holds,
/// each once, by id: the `key:\tvalue` lines of their fdinfo. A descriptor
/// is one when it has an `{object}_type:` line (link descriptors name a
/// `prog_id` too, but carry no statistics).
fn held(pid: u32, object: &str) -> anyhow::Result<BTreeMap<u32, BTreeMap<String, String>>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let (marker, id_key) = (format!("{object}_type:"), format!("{object}_id"));
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        // A descriptor closed meanwhile is simply skipped.
        let Ok(text) = std::fs::read_to_string(entry?.path()) else { continue };
        if !text.lines().any(|line| line.starts_with(&marker)) {
            continue;
        }
        let fields: BTreeMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        found.insert(number(&fields, &id_key) as u32, fields);
    }
    Ok(found)
}

fn number(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    let value = fields.get(key).map(String::as_str).unwrap_or("0");
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
        None => value.parse().unwrap_or(0),
    }
}

/// The maps `pid` holds, each once, named as bpftool names them.
pub fn maps_of(pid: u32) -> anyhow::Result<Vec<MapInfo>> {
    let names = bpftool_names("map")?;
    let maps = held(pid, "map")?.into_iter().map(|(id, fields)| {
        let (kind, name) = names.get(&id).cloned().unwrap_or_default();
        MapInfo {
            id,
            name,
            kind,
            key_size: number(&fields, "key_size"),
            value_size: number(&fields, "value_size"),
            max_entries: number(&fields, "max_entries"),
            flags: number(&fields, "map_flags"),
            memlock: number(&fields, "memlock"),
        }
    });
    Ok(maps.collect())
}

/// The programs `pid` holds, each once.
pub fn progs_of(pid: u32) -> anyhow::Result<Vec<ProgInfo>> {
    let names = bpftool_names("prog")?;
    let progs = held(pid, "prog")?.into_iter().map(|(id, fields)| ProgInfo {
        id,
        name: names.get(&id).map(|(_, name)| name.clone()).unwrap_or_default(),
        run_time_ns: number(&fields, "run_time_ns"),
        run_cnt: number(&fields, "run_cnt"),
    });
    Ok(progs.collect())
}

/// The program types that hook tracing events, and so add to the syscalls
/// this benchmark times.
const TRACING_TYPES: &[&str] =
    &["tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "tracing", "kprobe", "perf_event"];

/// Tracing programs loaded on this machine that none of `ours` (pids) holds:
/// another engineer's test or tracer, whose probes would be timed too.
pub fn foreign_tracing_programs(ours: &[u32]) -> anyhow::Result<Vec<String>> {
    let mut own = HashSet::new();
    for &pid in ours {
        // A process that just exited holds nothing any more.
        if let Ok(progs) = held(pid, "prog") {
            own.extend(progs.into_keys());
        }
    }
    let mut foreign: Vec<String> = bpftool_names("prog")?
        .into_iter()
        .filter(|(id, (kind, _))| TRACING_TYPES.contains(&kind.as_str()) && !own.contains(id))
        .map(|(id, (kind, name))| format!("{id} {kind} {name}"))
        .collect();
    foreign.sort();
    Ok(foreign)
}

/// `bpftool map show` or `bpftool prog show`, as id → (type, name).
///
/// Each object is a line `ID: TYPE  name NAME  ...` followed by indented
/// lines; objects without a name get an empty one.
fn bpftool_names(object: &str) -> anyhow::Result<BTreeMap<u32, (String, String)>> {
    let text = cmd::read(Command::new("bpftool").args([object, "show"]))?;
    let mut names = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with(char::is_whitespace)) {
        let mut words = line.split_whitespace();
        let (Some(id), Some(kind)) = (words.next(), words.next()) else { continue };
        let Ok(id) = id.trim_end_matches(':').parse::<u32>() else { continue };
        let mut name = String::new();
        while let Some(word) = words.next() {
            if word == "name" {
                name = words.next().unwrap_or_default().to_owned();
                break;
            }
        }
        names.insert(id, (kind.to_owned(), name));
    }
    Ok(names)
}

/// Number of possible CPUs (/sys/devices/system/cpu/possible, e.g. `0-1`):
/// per-CPU maps hold one value per possible CPU.
pub fn possible_cpus() -> anyhow::Result<u64> {
    let path = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut count = 0;
    for range in text.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (u64, u64) = (first.parse()?, last.parse()?);
        count += last - first + 1;
    }
    Ok(count)
}

/// The first line of a /proc or /sys file that starts with `prefix`, after it.
pub fn line_after(path: impl AsRef<Path>, prefix: &str) -> anyhow::Result<String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match text.lines().find_map(|line| line.strip_prefix(prefix)) {
        Some(rest) => Ok(rest.trim().trim_start_matches(':').trim().to_owned()),
        None => bail!("no `{prefix}` in {}", path.display()),
    }
}

/// Entries in map `id` now (`bpftool map dump` ends with `Found N elements`).
pub fn map_entries(id: u32) -> anyhow::Result<u64> {
    let text = cmd::read(Command::new("bpftool").args(["map", "dump", "id", &id.to_string()]))?;
    let last = text.lines().rev().find(|line| line.starts_with("Found")).context("no `Found N elements`")?;
    last.split_whitespace().nth(1).context("no count")?.parse().with_context(|| format!("reading {last:?}"))
}

/// The sum over CPUs of the `u64` at `index` of the per-CPU array `id`.
pub fn per_cpu_sum(id: u32, index: u32) -> anyhow::Result<u64> {
    let mut lookup = Command::new("bpftool");
    lookup.args(["map", "lookup", "id", &id.to_string(), "key"]);
    lookup.args(index.to_le_bytes().map(|byte| byte.to_string()));
    let text = cmd::read(&mut lookup)?;
    // `value (CPU 00): 2f 0a 00 00 00 00 00 00`, little-endian.
    let mut sum = 0;
    for line in text.lines().filter(|line| line.starts_with("value")) {
        let bytes = line.split_once("):").context("a value line without `):`")?.1;
        let mut value = 0u64;
        for (i, byte) in bytes.split_whitespace().take(8).enumerate() {
            value |= u64::from(u8::from_str_radix(byte, 16)?) << (8 * i);
        }
        sum += value;
    }
    Ok(sum)
}

/// Processes (and threads) started on the machine since boot: `processes`
/// in /proc/stat.
pub fn processes_started() -> anyhow::Result<u64> {
    line_after("/proc/stat", "processes")?.parse().context("reading `processes` in /proc/stat")
}
