//! Where syscall exits (and the entries of syncs) are hooked. Each traced
//! syscall has the same handler behind three attach types, and the agent
//! loads one set:
//! - fexit on the syscall's kernel function (`__x64_sys_<name>`): costs
//!   untraced syscalls nothing, where the kernel allows fexit;
//! - a classic tracepoint `syscalls:sys_exit_<name>`: works everywhere, but
//!   while any syscall tracepoint is on, every syscall of every task takes
//!   the kernel's slower syscall path;
//! - one BTF tracepoint on `sys_exit` for all syscalls, dispatching on the
//!   syscall number: runs for every syscall of every task.
//!
//! Syncs are also hooked at their entry (fentry, `sys_enter_<name>`, or a
//! BTF tracepoint on `sys_enter`), to time them: a second probe per sync,
//! which is negligible next to the sync itself. In the BTF tracepoint mode
//! that second program runs on every syscall of every task, as the exit one
//! does.
//!
//! Syscall numbers and kernel function names are x86-64 (checked on 6.18).
//! 32-bit (ia32) syscalls of compat processes are not counted: the kernel
//! runs neither the `__x64_sys_*` functions nor the `syscalls:*` tracepoints
//! for them, and `sys_exit` sees them with ia32 numbers and argument
//! registers, so the BTF tracepoint skips them and counts the traced ones it
//! skipped.

use agent_common::{maps::ProbeErrorKind, sync::SyncCall, write::WriteSyscall};
use aya_ebpf::{
    bindings::pt_regs,
    macros::{btf_tracepoint, fentry, fexit, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, TracePointContext},
};

use super::{
    io_uring::{record_enter, record_setup},
    sync::{record_sync, record_sync_entry},
    write_family::record_write,
};
use crate::{
    aggregate::count_probe_error,
    syscall_args::{Args, in_compat_syscall},
    tracepoint::syscall_ret,
};

/// For each traced syscall: its number, its handler, its tracepoint
/// program (named like the tracepoint), and its fexit program with the
/// kernel function it hooks.
macro_rules! syscall_exits {
    ($($nr:literal => $handler:expr, $tracepoint:ident = $tp_name:literal, $fexit:ident = $function:literal;)*) => {
        $(
            #[tracepoint(category = "syscalls", name = $tp_name)]
            pub fn $tracepoint(ctx: TracePointContext) -> u32 {
                ($handler)(&Args::current(), syscall_ret(&ctx));
                0
            }

            #[fexit(function = $function)]
            pub fn $fexit(ctx: FExitContext) -> i32 {
                // `__x64_sys_*(const struct pt_regs *regs)`: the one argument,
                // then the return value.
                let regs: *const pt_regs = ctx.arg(0);
                let ret: i64 = ctx.arg(1);
                ($handler)(&Args::from_regs(regs), ret);
                0
            }
        )*

        /// Runs the handler of syscall `nr`, if it is traced.
        #[inline(always)]
        fn dispatch(nr: u64, regs: *const pt_regs, ret: i64) {
            match nr {
                $($nr => ($handler)(&Args::from_regs(regs), ret),)*
                _ => {}
            }
        }
    };
}

syscall_exits! {
    1 => |a: &Args, r| record_write(WriteSyscall::Write, a, r), sys_exit_write = "sys_exit_write", fexit_write = "__x64_sys_write";
    20 => |a: &Args, r| record_write(WriteSyscall::Writev, a, r), sys_exit_writev = "sys_exit_writev", fexit_writev = "__x64_sys_writev";
    18 => |a: &Args, r| record_write(WriteSyscall::Pwrite64, a, r), sys_exit_pwrite64 = "sys_exit_pwrite64", fexit_pwrite64 = "__x64_sys_pwrite64";
    296 => |a: &Args, r| record_write(WriteSyscall::Pwritev, a, r), sys_exit_pwritev = "sys_exit_pwritev", fexit_pwritev = "__x64_sys_pwritev";
    328 => |a: &Args, r| record_write(WriteSyscall::Pwritev2, a, r), sys_exit_pwritev2 = "sys_exit_pwritev2", fexit_pwritev2 = "__x64_sys_pwritev2";
    44 => |a: &Args, r| record_write(WriteSyscall::Sendto, a, r), sys_exit_sendto = "sys_exit_sendto", fexit_sendto = "__x64_sys_sendto";
    46 => |a: &Args, r| record_write(WriteSyscall::Sendmsg, a, r), sys_exit_sendmsg = "sys_exit_sendmsg", fexit_sendmsg = "__x64_sys_sendmsg";
    307 => |a: &Args, r| record_write(WriteSyscall::Sendmmsg, a, r), sys_exit_sendmmsg = "sys_exit_sendmmsg", fexit_sendmmsg = "__x64_sys_sendmmsg";
    426 => |a: &Args, r| record_enter(a, r), sys_exit_io_uring_enter = "sys_exit_io_uring_enter", fexit_io_uring_enter = "__x64_sys_io_uring_enter";
    425 => |_: &Args, r| record_setup(r), sys_exit_io_uring_setup = "sys_exit_io_uring_setup", fexit_io_uring_setup = "__x64_sys_io_uring_setup";
    74 => |a: &Args, r| record_sync(SyncCall::Fsync, a, r), sys_exit_fsync = "sys_exit_fsync", fexit_fsync = "__x64_sys_fsync";
    75 => |a: &Args, r| record_sync(SyncCall::Fdatasync, a, r), sys_exit_fdatasync = "sys_exit_fdatasync", fexit_fdatasync = "__x64_sys_fdatasync";
    277 => |a: &Args, r| record_sync(SyncCall::SyncFileRange, a, r), sys_exit_sync_file_range = "sys_exit_sync_file_range", fexit_sync_file_range = "__x64_sys_sync_file_range";
    26 => |a: &Args, r| record_sync(SyncCall::Msync, a, r), sys_exit_msync = "sys_exit_msync", fexit_msync = "__x64_sys_msync";
    306 => |a: &Args, r| record_sync(SyncCall::Syncfs, a, r), sys_exit_syncfs = "sys_exit_syncfs", fexit_syncfs = "__x64_sys_syncfs";
    162 => |a: &Args, r| record_sync(SyncCall::Sync, a, r), sys_exit_sync = "sys_exit_sync", fexit_sync = "__x64_sys_sync";
}

/// For each sync: its number, its `syscalls:sys_enter_*` tracepoint program
/// and its fentry program with the kernel function it hooks. Each stamps the
/// thread's entry time.
macro_rules! sync_entries {
    ($($nr:literal => $tracepoint:ident = $tp_name:literal, $fentry:ident = $function:literal;)*) => {
        $(
            #[tracepoint(category = "syscalls", name = $tp_name)]
            pub fn $tracepoint(_ctx: TracePointContext) -> u32 {
                record_sync_entry();
                0
            }

            #[fentry(function = $function)]
            pub fn $fentry(_ctx: FEntryContext) -> i32 {
                record_sync_entry();
                0
            }
        )*

        /// Whether syscall `nr` is a sync, whose entry is stamped.
        #[inline(always)]
        fn is_sync(nr: u64) -> bool {
            matches!(nr, $($nr)|*)
        }
    };
}

sync_entries! {
    74 => sys_enter_fsync = "sys_enter_fsync", fentry_fsync = "__x64_sys_fsync";
    75 => sys_enter_fdatasync = "sys_enter_fdatasync", fentry_fdatasync = "__x64_sys_fdatasync";
    277 => sys_enter_sync_file_range = "sys_enter_sync_file_range", fentry_sync_file_range = "__x64_sys_sync_file_range";
    26 => sys_enter_msync = "sys_enter_msync", fentry_msync = "__x64_sys_msync";
    306 => sys_enter_syncfs = "sys_enter_syncfs", fentry_syncfs = "__x64_sys_syncfs";
    162 => sys_enter_sync = "sys_enter_sync", fentry_sync = "__x64_sys_sync";
}

/// Every syscall's entry, for the BTF tracepoint attach type: stamps syncs.
#[btf_tracepoint(function = "sys_enter")]
pub fn raw_sys_enter(ctx: BtfTracePointContext) -> u32 {
    // `trace_sys_enter(struct pt_regs *regs, long id)`.
    let nr: u64 = ctx.arg(1);
    if is_sync(nr) {
        record_sync_entry();
    }
    0
}

/// Every syscall's exit, for the BTF tracepoint attach type.
#[btf_tracepoint(function = "sys_exit")]
pub fn raw_sys_exit(ctx: BtfTracePointContext) -> u32 {
    // `trace_sys_exit(struct pt_regs *regs, long ret)`; the syscall number
    // is in `orig_rax`.
    let regs: *const pt_regs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // SAFETY: a BTF-typed pointer to the user register frame.
    let nr = unsafe { (*regs).orig_rax };
    if in_compat_syscall() {
        // ia32 number 20 is getpid, not writev: never dispatched.
        if is_traced_compat(nr) {
            count_probe_error(ProbeErrorKind::CompatSkipped);
        }
        return 0;
    }
    dispatch(nr, regs, ret);
    0
}

/// Whether `nr` is, in the ia32 syscall table, one of the traced syscalls:
/// write 4, writev 146, pwrite64 181, pwritev 334, sendmmsg 345, sendto 369,
/// sendmsg 370, pwritev2 379, io_uring_setup 425, io_uring_enter 426
/// (`arch/x86/entry/syscalls/syscall_32.tbl`).
#[inline(always)]
fn is_traced_compat(nr: u64) -> bool {
    matches!(nr, 4 | 146 | 181 | 334 | 345 | 369 | 370 | 379 | 425 | 426)
}
