//! `byokd-emulator`: run the Azure emulator until SIGTERM/SIGINT.
//!
//! Usage: `byokd-emulator [--listen 127.0.0.1:8443] [--ca-out PATH] [--ca-dir DIR]
//! [--config FILE.toml|FILE.json] [--request-log FILE]`

use std::path::PathBuf;
use std::process::ExitCode;

use byokd_emulator::{Emulator, EmulatorConfig};

fn usage() -> &'static str {
    "usage: byokd-emulator [--listen IP:PORT] [--ca-out PATH] [--ca-dir DIR] [--config FILE] [--request-log FILE]"
}

fn parse_args() -> Result<EmulatorConfig, String> {
    let mut args = std::env::args().skip(1);
    let mut cfg: Option<EmulatorConfig> = None;
    let mut listen = None;
    let mut ca_out = None;
    let mut ca_dir = None;
    let mut log = None;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--listen" => listen = Some(val()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--ca-out" => ca_out = Some(PathBuf::from(val()?)),
            "--ca-dir" => ca_dir = Some(PathBuf::from(val()?)),
            "--request-log" => log = Some(PathBuf::from(val()?)),
            "--config" => {
                let path = val()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                let parsed: EmulatorConfig = if path.ends_with(".json") {
                    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?
                } else {
                    toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?
                };
                cfg = Some(parsed);
            }
            "-h" | "--help" => return Err(usage().to_owned()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    let mut cfg = cfg.unwrap_or_default();
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if ca_out.is_some() {
        cfg.ca_out = ca_out;
    }
    if ca_dir.is_some() {
        cfg.ca_dir = ca_dir;
    }
    if log.is_some() {
        cfg.request_log_file = log;
    }
    if !cfg.listen.ip().is_loopback() {
        return Err("--listen must be a loopback address".into());
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let emu = match Emulator::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("byokd-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", emu.addr());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("byokd-emulator: cannot install SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    emu.shutdown().await;
    ExitCode::SUCCESS
}
