//! The programs' own statistics: `recursion_misses`, the calls the kernel
//! ran no probe for, read from each program's fdinfo and checked against
//! bpftool, which reads them through `bpf_prog_info`. Tracepoint programs
//! here report 0 (fexit, where misses come from preemption, is refused on
//! these machines): the test checks that the number is read and agrees, not
//! that it is above zero. One test in this file, so that no other agent
//! loads programs into this process meanwhile. Root only.

mod common;

use std::process::Command;

use common::{observe, require_tool};

/// Ids of the BPF programs this process holds, from its fdinfo.
fn own_program_ids() -> Vec<u32> {
    let entries = std::fs::read_dir("/proc/self/fdinfo").expect("own fdinfo");
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|id| id.trim().parse().ok()))
        .collect()
}

/// `recursion_misses` of program `id` as bpftool reads it (absent when 0).
fn bpftool_recursion_misses(bpftool: &str, id: u32) -> u64 {
    let out = Command::new(bpftool).args(["prog", "show", "id", &id.to_string(), "--json"]).output().expect("bpftool");
    assert!(out.status.success(), "bpftool prog show id {id}: {out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    info.get("recursion_misses").map_or(0, |n| n.as_u64().expect("a count"))
}

#[test]
fn recursion_misses_are_read_from_every_program() {
    let bpftool = require_tool("bpftool", "bpftool");
    let observed = observe(&["write", "--count", "20000", "--size", "8"]);
    let ids = own_program_ids();
    assert!(ids.len() >= 10, "the agent's programs: {ids:?}");
    let expected: u64 = ids.iter().map(|&id| bpftool_recursion_misses(&bpftool, id)).sum();
    assert_eq!(observed.agent.probe_errors().recursion_misses, expected, "over programs {ids:?}");
}
