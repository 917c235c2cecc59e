//! The programs: where syscall exits are hooked, then one module per family.

mod execs;
mod exits;
mod io_uring;
mod sync;
mod syscalls;
mod write_family;
