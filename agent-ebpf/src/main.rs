//! batchwatch's kernel programs.
//!
//! Each probe aggregates in place, in bounded maps: no event per syscall ever
//! leaves the kernel. The agent reads the maps on an interval.
#![no_std]
#![no_main]
// Atomic read-modify-write on shared map values (see `aggregate`): the BPF
// target has no `core::sync::atomic` operations for them.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics is the one way to BPF atomics from Rust")]

#[macro_use]
mod tracepoint;
mod aggregate;
mod probes;
mod syscall_args;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
