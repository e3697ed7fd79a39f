//! Test-only build of the byokd daemon that writes the next state format (feature
//! `test-next-format`); used by tests/system_upgrade.rs to upgrade across a state format.
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
