//! The byokd daemon. All logic lives in the library: see `byokd::daemon`.
#![forbid(unsafe_code)]

/// Every heap block is zeroed when it is freed, so secrets that pass through buffers byokd does
/// not own (rustls plaintext, hyper read buffers, serde scratch) do not outlive their use. The
/// `unsafe` allocator code lives in the `zeroizing-alloc` crate; this crate stays
/// `forbid(unsafe_code)`. Checked by tests/system_memory.rs.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> std::process::ExitCode {
    byokd::daemon::main()
}
