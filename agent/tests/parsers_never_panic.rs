//! Property tests: the parsers of text batchwatch reads from outside (config
//! files, `/proc` and cgroup files, fd links) return a value or an error on
//! any input, and never panic. Unprivileged.

use batchwatch::{
    attribution::container::Container,
    attribution::fds::{FdInfo, FdKind, classify},
    bpf::preflight::effective_capabilities,
    config::{Config, Settings},
    depth::fdinfo::RingFdinfo,
};
use proptest::prelude::*;

/// Text that looks like the files being parsed often enough to reach deep
/// into the parsers: their key words, digits, separators, and anything else.
fn text_like(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(words).prop_map(str::to_owned),
        "[0-9a-fx]{1,70}",
        prop::sample::select(&[":", "\t", "\n", " ", "/", "-", ".", "=", "[", "]", "\"", "_"][..])
            .prop_map(str::to_owned),
        any::<String>(),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_files(text in text_like(&[
        "interval", "transition_cost_ns", "attach", "[hot_writer]", "min_calls_per_sec", "max_bytes_per_call",
        "sustain_intervals", "window_intervals", "max_records_per_call", "batch_target", "[timer_flush]", "min_period", "min_share", "min_flushes",
        "[io_uring]", "min_wakeups_per_sec", "[maps]", "max_fds", "max_processes", "\"1s\"", "\"auto\"", "nan", "inf",
        "-1", "1e400", "true",
    ])) {
        if let Ok(settings) = Settings::parse(&text, "fuzz.toml") {
            let _ = Config::resolve(settings);
        }
    }

    #[test]
    fn cgroup_files(text in text_like(&[
        "0::", "12:memory:", "1:name=systemd:", "/docker/", "docker-", ".scope", "cri-containerd-", "crio-",
        "libpod-", "/kubepods/", "kubepods-burstable-pod", ".slice", "pod",
    ])) {
        if let Some(container) = Container::from_cgroup_file(&text) {
            prop_assert_eq!(container.id.len(), 64);
        }
    }

    #[test]
    fn ring_fdinfo(text in text_like(&[
        "SqMask:", "CqMask:", "SQEs:", "CQEs:", "SqThread:", "SqHead:", "SqTail:", "0x", "0xffffffff", "-1",
    ])) {
        if let Some(ring) = RingFdinfo::parse(&text) {
            prop_assert!(ring.sq_entries > 0 && ring.cq_entries > 0);
            prop_assert!(ring.sq_percent().is_finite() && ring.cq_percent().is_finite());
        }
    }

    #[test]
    fn status_capabilities(text in text_like(&["CapEff:", "CapPrm:", "000001ffffffffff", "\t"])) {
        let _ = effective_capabilities(&text);
    }

    #[test]
    fn fd_links(target in text_like(&["socket:[", "pipe:[", "anon_inode:[io_uring]", "/dev/pts/", "]", "18446744073709551616"])) {
        let kind = classify(&target, std::path::Path::new("/nonexistent"));
        let _ = FdInfo { kind, target: target.clone(), synced_writes: false }.inode();
        prop_assert!(kind != FdKind::File, "nothing at a path that does not exist is a file");
    }

    /// The `/proc/PID/stat` parser batchwatch relies on (procfs-core), on
    /// what a process controls there: its name, up to 15 bytes of anything,
    /// parentheses, spaces and newlines included. The kernel writes the rest,
    /// `PID (NAME) STATE` and numbers (procfs-core does panic on other
    /// shapes, which the kernel never writes).
    #[test]
    fn procfs_stat(
        pid in 1u32..4_194_304,
        comm in "[()a-z \n:ä]{0,15}",
        state in "[RSDZTtXxKWPI]",
        numbers in prop::collection::vec(any::<i64>(), 0..60),
    ) {
        let numbers: Vec<String> = numbers.iter().map(i64::to_string).collect();
        let text = format!("{pid} ({comm}) {state} {}\n", numbers.join(" "));
        let _ = <procfs::process::Stat as procfs::FromRead>::from_read(text.as_bytes());
    }

    /// The `/proc/PID/io` parser (procfs-core) that the fallback polling
    /// `/proc` relies on. The kernel writes all of that file, ASCII
    /// `name: number` lines, so the cases vary which lines come, in what
    /// order, with what names and values (procfs-core panics on a name that
    /// ends inside a multi-byte character, which the kernel never writes).
    #[test]
    fn procfs_io(lines in prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(&["rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes",
                    "cancelled_write_bytes"][..]).prop_map(str::to_owned),
                "[a-z_]{0,22}",
            ],
            prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9a-z -]{0,22}"],
        ),
        0..10,
    )) {
        let text: String = lines.iter().map(|(name, value)| format!("{name}: {value}\n")).collect();
        let _ = <procfs::process::Io as procfs::FromBufRead>::from_buf_read(text.as_bytes());
    }
}
