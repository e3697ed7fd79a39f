//! byokctl, the operator's CLI for byokd. All logic lives in the library: see `byokd::ctl`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    byokd::ctl::run()
}
