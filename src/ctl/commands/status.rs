//! `byokctl status` and `byokctl designated`, and the generated shell completions and man page.

use super::Ctx;
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use http::Method;
use serde_json::{Value, json};

pub(super) async fn designated(ctx: &Ctx, c: DesignatedCmd) -> Result<(), CtlError> {
    let v = match c {
        DesignatedCmd::Get => ctx.get("/v1/config/designated").await?,
        DesignatedCmd::Set { value } => {
            ctx.send(
                Method::PUT,
                "/v1/config/designated",
                &json!({ "designated": value }),
            )
            .await?
            .body
        }
    };
    if !ctx.json(&v) {
        let d = v
            .get("designated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        println!(
            "{}",
            if d {
                "designated: yes (this appliance pushes to the cloud)"
            } else {
                "designated: no"
            }
        );
    }
    Ok(())
}

pub(super) async fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let health = ctx.get("/v1/health").await?;
    let me = ctx.get("/v1/whoami").await?;
    let both = json!({ "health": health, "whoami": me });
    if ctx.json(&both) {
        return Ok(());
    }
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    println!(
        "daemon      byokd {} ({})",
        s(&health, "/version"),
        if health.get("ready") == Some(&json!(true)) {
            "ready"
        } else {
            "NOT READY"
        }
    );
    println!(
        "hsm         {} (token {}, {} {})",
        s(&health, "/hsm/detail"),
        s(&health, "/hsm/token"),
        s(&health, "/hsm/model"),
        s(&health, "/hsm/serial")
    );
    println!(
        "wrap        {} ({})",
        s(&health, "/hsm/wrap_strategy").replace("null", "none"),
        s(&health, "/hsm/wrap_summary")
    );
    println!("state       generation {}", s(&health, "/state/generation"));
    println!("designated  {}", s(&health, "/designated"));
    if health.get("logs").is_some_and(|l| !l.is_null()) {
        println!(
            "logs        {} (next record {}, {} segment(s), {} bytes)",
            match health.pointer("/logs/write/error").and_then(Value::as_str) {
                Some(e) => format!("DEGRADED: {e}"),
                None => "ok".to_owned(),
            },
            s(&health, "/logs/next_seq"),
            s(&health, "/logs/segments"),
            s(&health, "/logs/bytes")
        );
        let refused = health
            .pointer("/logs/unattributed/refused")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if refused > 0 || health.pointer("/logs/unattributed/refusing") == Some(&json!(true)) {
            println!(
                "unattrib.   records of peers without a certificate: {} of {} bytes kept; {} REFUSED (the share is full)",
                s(&health, "/logs/unattributed/bytes"),
                s(&health, "/logs/unattributed/reserve"),
                refused
            );
        }
        for f in health
            .pointer("/logs/forwarders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "syslog      {} {} ({}, sent {}, queued {}, dropped {})",
                s(f, "/transport"),
                s(f, "/address"),
                if f.get("connected") == Some(&json!(true)) {
                    "connected"
                } else {
                    "NOT CONNECTED"
                },
                s(f, "/sent"),
                s(f, "/queued"),
                s(f, "/dropped")
            );
        }
    }
    println!("you         {} ({})", s(&me, "/identity"), s(&me, "/role"));
    Ok(())
}

pub(super) fn generate_completions(dir: &std::path::Path) -> Result<(), CtlError> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).map_err(|e| CtlError::Usage(format!("{}: {e}", dir.display())))?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "byokctl", dir)
            .map_err(|e| CtlError::Other(format!("{}: {e}", dir.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

pub(super) fn generate_man(dir: &std::path::Path) -> Result<(), CtlError> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).map_err(|e| CtlError::Usage(format!("{}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| CtlError::Other(format!("{}: {e}", dir.display())))?;
    println!("{}", dir.join("byokctl.1").display());
    Ok(())
}
