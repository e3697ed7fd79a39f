//! `byokctl status` and `byokctl designated`, and the generated shell completions and man page.

use super::Ctx;
use crate::contract::{Designated, DesignatedSource, Health, Whoami};
use crate::ctl::CtlError;
use crate::ctl::cli::*;
use crate::ctl::output::say;
use http::Method;
use serde_json::json;

pub(super) async fn designated(ctx: &Ctx, c: DesignatedCmd) -> Result<(), CtlError> {
    let path = "/v1/config/designated";
    let v: Designated = match c {
        DesignatedCmd::Get => ctx.get(path).await?,
        DesignatedCmd::Set { value } => {
            let body = Designated {
                designated: value == OnOff::On,
            };
            ctx.send(Method::PUT, path, &body).await?
        }
    };
    if !ctx.machine(&v)? {
        say(if v.designated {
            "designated: yes (this appliance pushes to the cloud)"
        } else {
            "designated: no"
        })?;
    }
    Ok(())
}

/// `yes (from byokd.toml)`, or `no (set through the API; overrides designated = true in
/// byokd.toml)`.
fn designated_line(value: bool, source: DesignatedSource, file: bool) -> String {
    let yes_no = if value { "yes" } else { "no" };
    match source {
        DesignatedSource::File => format!("{yes_no} (from byokd.toml)"),
        DesignatedSource::Api if value == file => format!("{yes_no} (set through the API)"),
        DesignatedSource::Api => {
            format!("{yes_no} (set through the API; overrides designated = {file} in byokd.toml)")
        }
    }
}

pub(super) async fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let health: Health = ctx.get("/v1/health").await?;
    let me: Whoami = ctx.get("/v1/whoami").await?;
    let both = json!({ "health": health, "whoami": me });
    if ctx.machine(&both)? {
        return Ok(());
    }
    say(&format!(
        "daemon      byokd {} ({})",
        health.version,
        if health.ready { "ready" } else { "NOT READY" }
    ))?;
    let hsm = &health.hsm;
    say(&format!(
        "hsm         {} (token {}, {} {})",
        hsm.detail, hsm.token, hsm.model, hsm.serial
    ))?;
    say(&format!(
        "wrap        {} ({})",
        hsm.wrap_strategy
            .map_or_else(|| "none".to_owned(), |w| w.to_string()),
        hsm.wrap_summary
    ))?;
    say(&format!(
        "state       generation {}",
        health.state.generation
    ))?;
    say(&format!(
        "designated  {}",
        designated_line(
            health.designated,
            health.designated_source,
            health.designated_file
        )
    ))?;
    if let Some(logs) = &health.logs {
        say(&format!(
            "logs        {} (next record {}, {} segment(s), {} bytes)",
            match &logs.write.error {
                Some(e) => format!("DEGRADED: {e}"),
                None => "ok".to_owned(),
            },
            logs.next_seq,
            logs.segments,
            logs.bytes
        ))?;
        let u = &logs.unattributed;
        if u.refused > 0 || u.refusing {
            say(&format!(
                "unattrib.   records of peers without a certificate: {} of {} bytes kept; {} REFUSED (the share is full)",
                u.bytes, u.reserve, u.refused
            ))?;
        }
        for f in &logs.forwarders {
            say(&format!(
                "syslog      {} {} ({}, sent {}, queued {}, dropped {})",
                json!(f.transport).as_str().unwrap_or_default(),
                f.address,
                if f.connected {
                    "connected"
                } else {
                    "NOT CONNECTED"
                },
                f.sent,
                f.queued,
                f.dropped
            ))?;
        }
    }
    say(&format!("you         {} ({})", me.identity, me.role))?;
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
        say(&path.display().to_string())?;
    }
    Ok(())
}

pub(super) fn completion(shell: clap_complete::Shell) -> Result<(), CtlError> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "byokctl", &mut script);
    crate::ctl::output::say_bytes(&script)
}

pub(super) fn generate_man(
    dir: &std::path::Path,
    config_reference: &std::path::Path,
) -> Result<(), CtlError> {
    for page in crate::ctl::man::generate(dir, config_reference)? {
        say(&page.display().to_string())?;
    }
    Ok(())
}
