//! Where syscall exits are hooked. Each traced syscall has the same handler
//! behind three attach types, and the agent loads one set:
//! - fexit on the syscall's kernel function (`__x64_sys_<name>`): costs
//!   untraced syscalls nothing, where the kernel allows fexit;
//! - a classic tracepoint `syscalls:sys_exit_<name>`: works everywhere, but
//!   while any syscall tracepoint is on, every syscall of every task takes
//!   the kernel's slower syscall path;
//! - one BTF tracepoint on `sys_exit` for all syscalls, dispatching on the
//!   syscall number: runs for every syscall of every task.
//!
//! Syscall numbers and kernel function names are x86-64 (checked on 6.18).
//! 32-bit (ia32) syscalls of compat processes are not counted: the kernel
//! runs neither the `__x64_sys_*` functions nor the `syscalls:*` tracepoints
//! for them, and `sys_exit` sees them with ia32 numbers and argument
//! registers, so the BTF tracepoint skips them and counts the traced ones it
//! skipped.

use agent_common::{maps::ProbeErrorKind, write::WriteSyscall};
use aya_ebpf::{
    bindings::pt_regs,
    macros::{btf_tracepoint, fexit, tracepoint},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};

use super::{
    io_uring::{record_enter, record_setup},
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
