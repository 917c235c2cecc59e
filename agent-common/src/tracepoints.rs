//! The fields the probes read from classic tracepoint records, named, each
//! with the line of the tracepoint's tracefs `format` file it comes from
//! (`/sys/kernel/tracing/events/<event>/format`, Linux 6.18; the file
//! separates the parts with tabs). The test `tracepoint_formats` reads those
//! files on the running kernel and fails when an offset or a size differs.

/// One field of a tracepoint record: where it is in the record of each of
/// `events`, and how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The tracepoints, as `category/name` (tracefs's `events/` directories);
    /// a trailing `*` stands for every tracepoint of that prefix.
    pub events: &'static [&'static str],
    /// The field's name in the `format` file.
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// `field:long ret; offset:16; size:8; signed:1;`: the same in every
/// syscall exit, after the common fields and `int __syscall_nr`.
pub const SYS_EXIT_RET: Field = Field { events: &["syscalls/sys_exit_*"], name: "ret", offset: 16, size: 8 };

const CREATE: &[&str] = &["io_uring/io_uring_create"];
/// `field:int fd; offset:8; size:4; signed:1;`
pub const CREATE_FD: Field = Field { events: CREATE, name: "fd", offset: 8, size: 4 };
/// `field:void * ctx; offset:16; size:8; signed:0;`
pub const CREATE_CTX: Field = Field { events: CREATE, name: "ctx", offset: 16, size: 8 };
/// `field:u32 sq_entries; offset:24; size:4; signed:0;`
pub const CREATE_SQ_ENTRIES: Field = Field { events: CREATE, name: "sq_entries", offset: 24, size: 4 };
/// `field:u32 cq_entries; offset:28; size:4; signed:0;`
pub const CREATE_CQ_ENTRIES: Field = Field { events: CREATE, name: "cq_entries", offset: 28, size: 4 };
/// `field:u32 flags; offset:32; size:4; signed:0;`
pub const CREATE_FLAGS: Field = Field { events: CREATE, name: "flags", offset: 32, size: 4 };

/// `field:void * ctx; offset:8; size:8; signed:0;`: the ring, first in
/// every io_uring record but `io_uring_create`'s.
pub const RING_CTX: Field = Field {
    events: &[
        "io_uring/io_uring_submit_req",
        "io_uring/io_uring_complete",
        "io_uring/io_uring_cqe_overflow",
        "io_uring/io_uring_req_failed",
        "io_uring/io_uring_short_write",
    ],
    name: "ctx",
    offset: 8,
    size: 8,
};

const SUBMIT_REQ: &[&str] = &["io_uring/io_uring_submit_req"];
/// `field:u8 opcode; offset:32; size:1; signed:0;`
pub const SUBMIT_OPCODE: Field = Field { events: SUBMIT_REQ, name: "opcode", offset: 32, size: 1 };
/// `field:bool sq_thread; offset:48; size:1; signed:0;`: submitted by the
/// SQPOLL thread.
pub const SUBMIT_SQ_THREAD: Field = Field { events: SUBMIT_REQ, name: "sq_thread", offset: 48, size: 1 };

/// `field:int res; offset:32; size:4; signed:1;` of `io_uring_complete`.
pub const COMPLETE_RES: Field = Field { events: &["io_uring/io_uring_complete"], name: "res", offset: 32, size: 4 };

/// `field:bool group_dead; offset:32; size:1; signed:0;` of
/// `sched_process_exit`, after `comm`, `pid` and `prio`: the last thread of
/// the process is exiting.
pub const EXIT_GROUP_DEAD: Field =
    Field { events: &["sched/sched_process_exit"], name: "group_dead", offset: 32, size: 1 };

/// Every field the probes read.
pub const ALL: [Field; 11] = [
    SYS_EXIT_RET,
    CREATE_FD,
    CREATE_CTX,
    CREATE_SQ_ENTRIES,
    CREATE_CQ_ENTRIES,
    CREATE_FLAGS,
    RING_CTX,
    SUBMIT_OPCODE,
    SUBMIT_SQ_THREAD,
    COMPLETE_RES,
    EXIT_GROUP_DEAD,
];
