//! The programs the kernel object holds, and where each one hooks, read from
//! the object itself: aya-ebpf's program macros put each program in an ELF
//! section that names its hook (`tracepoint/<category>/<name>`,
//! `fexit/<function>`, `tp_btf/<event>`). The loader attaches what this
//! finds, so a program name is written once, in the eBPF crate, and a new
//! program there is attached without a second list here.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

/// Where a program hooks, as its section says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A classic tracepoint, `category:name` in tracefs.
    Tracepoint { category: String, name: String },
    /// fexit on a kernel function.
    Fexit { function: String },
    /// fentry on a kernel function.
    Fentry { function: String },
    /// A BTF-typed tracepoint on a raw kernel event.
    BtfTracepoint { event: String },
    /// A section the loader has no rule for (a new program type): it is
    /// reported as not attached rather than skipped.
    Unknown { section: String },
}

/// One program of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProgram {
    /// The program's (function's) name, as aya knows it.
    pub name: String,
    pub hook: Hook,
}

/// The ELF sections that hold no program: data, maps, BTF, relocations and
/// the rest of what a BPF object carries.
fn is_program_section(section: &str) -> bool {
    !(section.is_empty()
        || section.starts_with('.')
        || matches!(section, "maps" | "license" | "version")
        || section.starts_with("license"))
}

impl Hook {
    fn of_section(section: &str) -> Hook {
        let mut parts = section.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("tracepoint" | "tp"), Some(category), Some(name)) => {
                Hook::Tracepoint { category: category.to_owned(), name: name.to_owned() }
            }
            (Some("fexit"), Some(function), None) => Hook::Fexit { function: function.to_owned() },
            (Some("fentry"), Some(function), None) => Hook::Fentry { function: function.to_owned() },
            (Some("tp_btf"), Some(event), None) => Hook::BtfTracepoint { event: event.to_owned() },
            _ => Hook::Unknown { section: section.to_owned() },
        }
    }
}

/// Every program in `object`, in the object's order.
pub fn programs(object: &[u8]) -> Result<Vec<ObjectProgram>, object::Error> {
    let file = object::File::parse(object)?;
    let mut programs = Vec::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || !symbol.is_global() {
            continue;
        }
        let Some(index) = symbol.section_index() else { continue };
        let section = file.section_by_index(index)?;
        let section = section.name()?;
        if !is_program_section(section) {
            continue;
        }
        programs.push(ObjectProgram { name: symbol.name()?.to_owned(), hook: Hook::of_section(section) });
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_hooks() {
        assert_eq!(
            Hook::of_section("tracepoint/syscalls/sys_exit_write"),
            Hook::Tracepoint { category: "syscalls".into(), name: "sys_exit_write".into() }
        );
        assert_eq!(Hook::of_section("fexit/__x64_sys_write"), Hook::Fexit { function: "__x64_sys_write".into() });
        assert_eq!(Hook::of_section("fentry/__x64_sys_fsync"), Hook::Fentry { function: "__x64_sys_fsync".into() });
        assert_eq!(Hook::of_section("tp_btf/sys_exit"), Hook::BtfTracepoint { event: "sys_exit".into() });
        assert_eq!(Hook::of_section("kprobe/vfs_write"), Hook::Unknown { section: "kprobe/vfs_write".into() });
    }
}
