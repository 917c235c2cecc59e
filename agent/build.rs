//! Builds the kernel programs (`agent-ebpf`) with the nightly toolchain and
//! bpf-linker, into `OUT_DIR`, where `src/probes` embeds them.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let package = aya_build::Package {
        name: "agent-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).context(
        "building the kernel programs failed; `cargo xtask setup` installs what they need \
         (the nightly toolchain's rust-src and bpf-linker)",
    )
}
