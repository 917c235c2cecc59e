//! Reading classic tracepoint records, and whom a probe counts.

use agent_common::tracepoints::SYS_EXIT_RET;
use aya_ebpf::{EbpfContext as _, Global, helpers::bpf_get_current_pid_tgid, programs::TracePointContext};

/// The agent's own tgid, set at load time: its writes are not counted.
#[unsafe(no_mangle)]
static SELF_TGID: Global<u32> = Global::new(0);

/// The current process, unless it is the agent itself.
#[inline(always)]
pub fn traced_tgid() -> Option<u32> {
    traced_thread().map(|thread| thread.tgid)
}

/// The current thread and its process.
#[derive(Clone, Copy)]
pub struct Thread {
    pub tgid: u32,
    pub tid: u32,
}

/// The current thread, unless it is one of the agent's: both ids from one
/// helper call.
#[inline(always)]
pub fn traced_thread() -> Option<Thread> {
    let ids = bpf_get_current_pid_tgid();
    let thread = Thread { tgid: (ids >> 32) as u32, tid: ids as u32 };
    if thread.tgid == SELF_TGID.load() { None } else { Some(thread) }
}

/// Reads the record field `$field` (an `agent_common::tracepoints::Field`)
/// as a `$ty`; the build fails if the two sizes differ.
macro_rules! read_field {
    ($ctx:expr, $field:path as $ty:ty) => {{
        const _: () = assert!($field.size == core::mem::size_of::<$ty>(), "the field's size is not the type's");
        $crate::tracepoint::field_at::<$ty>($ctx, $field.offset)
    }};
}

/// The value of type `T` at `offset` in the record; through [`read_field`].
#[inline(always)]
pub fn field_at<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: tracepoint records are readable context memory; the verifier
    // rejects a load outside the record.
    unsafe { *(ctx.as_ptr() as *const u8).add(offset).cast::<T>() }
}

/// `long ret` of a `syscalls:sys_exit_*` record.
#[inline(always)]
pub fn syscall_ret(ctx: &TracePointContext) -> i64 {
    read_field!(ctx, SYS_EXIT_RET as i64)
}
