//! Which language runtime a process runs on, from its executable and the
//! libraries it maps: the runtime decides which batching primitive the
//! advice names.
//!
//! - Node.js: an executable named `node`/`nodejs`, or `libnode.so` mapped.
//! - JVM: an executable named `java`, or `libjvm.so` mapped; the version from
//!   the `release` file of its Java home.
//! - Python: an executable named `python*`, or `libpython*.so` mapped; the
//!   version from that name (`python3.11`).
//! - Go: a `.go.buildinfo` section, whose header holds the Go version.
//! - Rust: rustc's `.comment` section ("rustc version 1.95.0 ..."), which
//!   stripping keeps.
//! - .NET: an executable named `dotnet`, or `libcoreclr.so` mapped; the
//!   version from its directory (`Microsoft.NETCore.App/8.0.1`).
//! - else native.
//!
//! An executable is parsed once (its sections read lazily, not the whole
//! file) and remembered by device and inode, so a node running thousands of
//! copies of one binary parses it once; `/proc/PID/maps` is read only for
//! executables that look native, where a runtime may be embedded.

use std::{collections::HashMap, io::Read as _, path::Path};

use object::{Object as _, ObjectSection as _, read::ReadCache};
use serde::Serialize;

use crate::attribution::identity::ProcDir;

/// A process's runtime, as reported and exported (`process.runtime.name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runtime {
    pub name: RuntimeName,
    /// Where it can be read: `"17.0.15"`, `"go1.19.8"`, `"3.11"`.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeName {
    Nodejs,
    Java,
    Python,
    Go,
    Rust,
    Dotnet,
    Native,
}

impl RuntimeName {
    /// The value of `process.runtime.name`.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeName::Nodejs => "nodejs",
            RuntimeName::Java => "java",
            RuntimeName::Python => "python",
            RuntimeName::Go => "go",
            RuntimeName::Rust => "rust",
            RuntimeName::Dotnet => "dotnet",
            RuntimeName::Native => "native",
        }
    }
}

impl Runtime {
    fn of(name: RuntimeName, version: Option<String>) -> Runtime {
        Runtime { name, version }
    }
}

/// Most executables remembered; past it the memory starts afresh.
const MAX_EXECUTABLES: usize = 4096;

/// Detects runtimes, remembering each executable's.
#[derive(Debug, Default)]
pub struct RuntimeDetector {
    by_executable: HashMap<(u64, u64), Runtime>,
}

impl RuntimeDetector {
    /// The runtime of the process whose `/proc/PID` is `proc`, or `None`
    /// when its executable cannot be read (it exited, or is a kernel thread).
    pub(crate) fn detect(&mut self, proc: &ProcDir) -> Option<Runtime> {
        let meta = proc.stat("exe").ok()?;
        let key = (meta.st_dev, meta.st_ino);
        if !self.by_executable.contains_key(&key) {
            // The name, read only for an executable not met yet.
            let path = proc.read_link("exe").ok()?;
            if self.by_executable.len() >= MAX_EXECUTABLES {
                self.by_executable.clear();
            }
            self.by_executable.insert(key, of_executable(&path, proc));
        }
        let runtime = self.by_executable[&key].clone();
        if runtime.name != RuntimeName::Native {
            return Some(runtime);
        }
        let mut maps = String::new();
        if let Ok(mut file) = proc.open_file("maps") {
            let _ = file.read_to_string(&mut maps);
        }
        Some(of_libraries(maps.lines().filter_map(|line| line.split_whitespace().nth(5))).unwrap_or(runtime))
    }
}

/// The runtime an executable shows by its name `path` or its ELF sections,
/// read through the `exe` link of `proc` (which works across mount
/// namespaces).
fn of_executable(path: &Path, proc: &ProcDir) -> Runtime {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match name {
        "node" | "nodejs" => return Runtime::of(RuntimeName::Nodejs, None),
        "java" => return Runtime::of(RuntimeName::Java, java_version(path.parent().and_then(Path::parent))),
        "dotnet" => return Runtime::of(RuntimeName::Dotnet, None),
        _ => {}
    }
    if let Some(version) = name.strip_prefix("python") {
        return Runtime::of(RuntimeName::Python, Some(version).filter(|v| !v.is_empty()).map(str::to_owned));
    }
    of_elf(proc).unwrap_or(Runtime::of(RuntimeName::Native, None))
}

/// Go or Rust from the sections of an ELF executable.
fn of_elf(proc: &ProcDir) -> Option<Runtime> {
    let cache = ReadCache::new(proc.open_file("exe").ok()?);
    let elf = object::read::elf::ElfFile64::<object::Endianness, _>::parse(&cache).ok()?;
    if let Some(section) = elf.section_by_name(".go.buildinfo") {
        return Some(Runtime::of(RuntimeName::Go, section.data().ok().and_then(go_version)));
    }
    let comment = elf.section_by_name(".comment")?.data().ok()?;
    let at = memchr::memmem::find(comment, b"rustc version ")?;
    let version = comment[at + 14..].split(|&b| b == b' ' || b == 0).next()?;
    Some(Runtime::of(RuntimeName::Rust, std::str::from_utf8(version).ok().map(str::to_owned)))
}

/// The Go version in a `.go.buildinfo` section (Go 1.18 and later): a
/// 32-byte header (`\xff Go buildinf:`, pointer size, flags), and when its
/// flags say the strings are inline (bit 2), the version as a
/// varint-prefixed string.
fn go_version(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !data.starts_with(MAGIC) || data.get(15)? & 2 == 0 {
        return None;
    }
    let (len, used) = uvarint(&data[32..])?;
    let start = 32 + used;
    let version = data.get(start..start + usize::try_from(len).ok()?)?;
    std::str::from_utf8(version).ok().map(str::to_owned)
}

/// An unsigned LEB128 varint and its length.
fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The `JAVA_VERSION` of the Java home `home` (`$JAVA_HOME/release`).
fn java_version(home: Option<&Path>) -> Option<String> {
    let release = std::fs::read_to_string(home?.join("release")).ok()?;
    let line = release.lines().find_map(|line| line.strip_prefix("JAVA_VERSION="))?;
    Some(line.trim_matches('"').to_owned())
}

/// A runtime embedded in a native executable, from the paths it maps.
fn of_libraries<'a>(paths: impl Iterator<Item = &'a str>) -> Option<Runtime> {
    for path in paths {
        let file = Path::new(path);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("libjvm.so") {
            // $JAVA_HOME/lib/server/libjvm.so
            return Some(Runtime::of(RuntimeName::Java, java_version(file.ancestors().nth(3))));
        }
        if let Some(rest) = name.strip_prefix("libpython") {
            let version = rest.split(".so").next().filter(|v| !v.is_empty()).map(str::to_owned);
            return Some(Runtime::of(RuntimeName::Python, version));
        }
        if name.starts_with("libnode.so") {
            return Some(Runtime::of(RuntimeName::Nodejs, None));
        }
        if name.starts_with("libcoreclr.so") {
            let version = file.parent().and_then(|dir| dir.file_name()).and_then(|v| v.to_str()).map(str::to_owned);
            return Some(Runtime::of(RuntimeName::Dotnet, version));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_name_embedded_runtimes() {
        let of = |paths: &[&str]| of_libraries(paths.iter().copied());
        assert_eq!(of(&["/usr/lib/x86_64-linux-gnu/libc.so.6"]), None);
        assert_eq!(
            of(&["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"]),
            Some(Runtime::of(RuntimeName::Python, Some("3.11".into())))
        );
        assert_eq!(
            of(&["/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.1/libcoreclr.so"]),
            Some(Runtime::of(RuntimeName::Dotnet, Some("8.0.1".into())))
        );
        assert_eq!(of(&["/usr/lib/x86_64-linux-gnu/libnode.so.108"]).map(|r| r.name), Some(RuntimeName::Nodejs));
    }

    #[test]
    fn go_build_info_holds_the_version() {
        let mut section = b"\xff Go buildinf:\x08\x02".to_vec();
        section.resize(32, 0);
        section.push(8);
        section.extend_from_slice(b"go1.19.8");
        assert_eq!(go_version(&section).as_deref(), Some("go1.19.8"));
        section[15] = 0;
        assert_eq!(go_version(&section), None, "pointers, not inline strings: before Go 1.18");
    }

    /// A native executable (coreutils' `sleep`) that maps a library named
    /// like an embedded runtime's: a copy of the libc this test maps,
    /// preloaded under the name `libpython3.11.so.1.0`.
    #[test]
    fn a_native_process_is_named_by_the_runtime_library_it_maps() {
        let own_maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc =
            own_maps.lines().filter_map(|line| line.split_whitespace().nth(5)).find(|path| path.contains("/libc.so"));
        let dir = std::env::temp_dir().join(format!("batchwatch-runtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let library = dir.join("libpython3.11.so.1.0");
        std::fs::copy(libc.expect("this test maps a libc"), &library).unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").env("LD_PRELOAD", &library).spawn().unwrap();
        let maps = format!("/proc/{}/maps", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&maps).unwrap_or_default().contains("libpython3.11") {
            assert!(std::time::Instant::now() < deadline, "sleep never mapped {library:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        let proc = ProcDir::open(child.id()).unwrap();
        let runtime = RuntimeDetector::default().detect(&proc);
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(runtime, Some(Runtime::of(RuntimeName::Python, Some("3.11".into()))));
    }

    #[test]
    fn this_test_binary_is_rust() {
        let mut detector = RuntimeDetector::default();
        let proc = ProcDir::open(std::process::id()).expect("our own /proc/PID");
        let runtime = detector.detect(&proc).expect("our own executable");
        assert_eq!(runtime.name, RuntimeName::Rust);
        assert!(runtime.version.as_deref().is_some_and(|v| v.starts_with("1.")), "{runtime:?}");
    }
}
