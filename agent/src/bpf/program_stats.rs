//! What the kernel counts about each loaded program, from its descriptor's
//! `/proc/self/fdinfo` entry (what `bpftool prog show` reads through
//! `bpf_prog_info`): here, `recursion_misses`.
//!
//! A program is skipped, and counted there and nowhere else, when it would
//! run on a CPU where it (or, for tracepoints, any BPF program) is already
//! running: a program preempted in the middle of a call makes every other
//! call of its hook on that CPU go unrecorded until it resumes. Linux 5.12
//! and later print the field; where it is missing it reads as 0.

use std::{io, os::fd::AsRawFd};

/// `recursion_misses` of the program whose descriptor is `fd`.
pub fn recursion_misses(fd: &impl AsRawFd) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    Ok(field(&text, "recursion_misses").unwrap_or(0))
}

/// The number after `name:` in an fdinfo text.
fn field(fdinfo: &str, name: &str) -> Option<u64> {
    fdinfo.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_field_of_a_program_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t88\nrun_time_ns:\t0\nrun_cnt:\t0\n\
                    recursion_misses:\t7\nverified_insns:\t54\n";
        assert_eq!(field(text, "recursion_misses"), Some(7));
        assert_eq!(field(text, "prog_id"), Some(88));
        assert_eq!(field("prog_id:\t1\n", "recursion_misses"), None);
    }
}
