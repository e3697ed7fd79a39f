//! The byokd daemon. All logic lives in the library: see `byokd::daemon`.

fn main() -> std::process::ExitCode {
    byokd::daemon::main()
}
