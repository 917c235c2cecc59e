# The batchwatch agent image: one static (musl) binary and nothing else.
#
#   docker build -t REGISTRY/batchwatch:TAG .
#       builds the binary in the `build` stage (stable Rust for the agent,
#       nightly + rust-src + bpf-linker for the kernel programs, which
#       agent/build.rs compiles for bpfel whatever the host target), then
#       copies it into an empty image.
#   cargo build --release --locked --target x86_64-unknown-linux-musl -p batchwatch
#   docker build --build-arg BINARY=prebuilt -t REGISTRY/batchwatch:TAG .
#       copies a binary built beforehand on a machine set up with
#       `cargo xtask setup` (docs/setup.md); no stage needs the network.
#       integration-tests/tests/deploy.rs builds the image this way.
#
# docs/deploy.md has the rest: pushing, the Kubernetes manifests, and why the
# container needs the capabilities it is given there.

# Which stage provides /batchwatch: `compiled` (below) or `prebuilt`.
ARG BINARY=compiled

# --- build: the toolchains of docs/setup.md, then the musl build ---------------
FROM docker.io/library/rust:1.95-bookworm AS build
# musl-tools: cc-rs then compiles the C in dependencies (ring, mimalloc, psm)
# with x86_64-linux-musl-gcc, against the musl it links with.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl \
 && rustup toolchain install nightly --profile minimal --component rust-src
# bpf-linker against the nightly's own libLLVM (bpf-linker cannot read bitcode
# from a newer LLVM than its own); the feature follows that LLVM's major.
RUN set -eu; \
    lib=$(ls "$(rustup run nightly rustc --print sysroot)"/lib/libLLVM.so.* | head -n1); \
    major=$(basename "$lib" | sed -E 's/^libLLVM\.so\.([0-9]+).*/\1/'); \
    prefix=/opt/llvm-prefix; mkdir -p "$prefix/lib"; \
    ln -s "$lib" "$prefix/lib/libLLVM.so"; ln -s "$lib" "$prefix/lib/$(basename "$lib")"; \
    LLVM_PREFIX="$prefix" cargo install bpf-linker --version 0.13.0 --locked \
        --no-default-features --features "llvm-$major"
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p batchwatch \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/batchwatch /out/batchwatch

FROM scratch AS compiled
COPY --from=build /out/batchwatch /batchwatch

# --- prebuilt: a binary from the build context ------------------------------
FROM scratch AS prebuilt
COPY target/x86_64-unknown-linux-musl/release/batchwatch /batchwatch

FROM ${BINARY} AS binary

# --- the image ---------------------------------------------------------------
# Only the agent. It runs as root with the capabilities the pod grants
# (deploy/kubernetes); it writes nothing, so the root filesystem can be
# read-only. No CA certificates: for an https:// OTLP endpoint, mount a bundle
# and set SSL_CERT_FILE (docs/deploy.md).
FROM scratch
LABEL org.opencontainers.image.title="batchwatch" \
      org.opencontainers.image.description="Per-process syscall batching metrics from eBPF: batch size, wait, buffer depth, drops" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /batchwatch /batchwatch
USER 0:0
ENTRYPOINT ["/batchwatch"]
CMD ["run"]
