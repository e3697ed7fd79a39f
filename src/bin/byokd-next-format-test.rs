//! Test-only build of the byokd daemon that writes the next state format (feature
//! `test-next-format`); used by tests/system_upgrade.rs to upgrade across a state format.

fn main() -> std::process::ExitCode {
    byokd::daemon::main()
}
