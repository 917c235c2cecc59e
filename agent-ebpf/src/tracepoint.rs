//! Reading classic tracepoint records, and whom a probe counts.

use aya_ebpf::{EbpfContext as _, Global, helpers::bpf_get_current_pid_tgid, programs::TracePointContext};

/// The agent's own tgid, set at load time: its writes are not counted.
#[unsafe(no_mangle)]
static SELF_TGID: Global<u32> = Global::new(0);

/// The current process, unless it is the agent itself.
#[inline(always)]
pub fn traced_tgid() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == SELF_TGID.load() { None } else { Some(tgid) }
}

/// The field of type `T` at `offset` in the record (offsets from the
/// tracepoint's `format` file).
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: tracepoint records are readable context memory; the verifier
    // rejects a load outside the record.
    unsafe { *(ctx.as_ptr() as *const u8).add(offset).cast::<T>() }
}

/// `long ret` of a `syscalls:sys_exit_*` record, after the common fields
/// and `int __syscall_nr`.
#[inline(always)]
pub fn syscall_ret(ctx: &TracePointContext) -> i64 {
    field(ctx, 16)
}
