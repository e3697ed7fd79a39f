//! The Azure emulator as the lifecycle and control-race tests start it: real TLS with its own
//! CA, one registered app with a client secret, vaults with the given recovery levels, and the
//! `[azure]` sections that point the daemon at it under the real host names.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use byokd_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, KeyPoolConfig, RecoveryLevel, VaultOptions,
};
use std::path::PathBuf;

/// A running emulator, the runtime it runs on and its CA file.
pub struct EmulatorRig {
    pub rt: tokio::runtime::Runtime,
    pub emu: EmulatorHandle,
    pub ca_path: PathBuf,
    /// Holds the CA file; dropped with the rig.
    pub ca_dir: tempfile::TempDir,
}

/// Starts the emulator with app (`tenant`, `client`, `secret`) and `vaults`. Azure's "being
/// deleted" window lasts `delete_pending_ms`.
pub fn start(
    (tenant, client, secret): (&str, &str, &str),
    vaults: &[(&str, RecoveryLevel)],
    delete_pending_ms: u64,
) -> EmulatorRig {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("emulator-ca.pem");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig {
            ca_out: Some(ca_path.clone()),
            key_pool: KeyPoolConfig {
                rsa2048: 2,
                rsa3072: 0,
                rsa4096: 0,
            },
            delete_pending_ms,
            ..EmulatorConfig::default()
        }))
        .unwrap();
    emu.add_app(AppConfig::with_secret(tenant, client, secret))
        .unwrap();
    for (vault, level) in vaults {
        emu.add_vault(
            vault,
            VaultOptions {
                recovery_level: *level,
                ..VaultOptions::default()
            },
        )
        .unwrap();
    }
    EmulatorRig {
        rt,
        emu,
        ca_path,
        ca_dir,
    }
}

impl EmulatorRig {
    /// Adds Managed HSM pool `name` (soft-delete always on: `level` is `RecoverablePurgeable`
    /// or `Recoverable`, purge protection) and returns its `[azure.resolve]` line.
    pub fn add_managed_hsm(&self, name: &str, level: RecoveryLevel) -> String {
        add_managed_hsm(&self.emu, name, level)
    }

    /// The daemon's `[azure]` and `[azure.resolve]` sections for `vaults`, with `azure_extra`
    /// lines inside `[azure]`, followed by `more` (whole sections).
    pub fn sections(&self, vaults: &[&str], azure_extra: &str, more: &str) -> String {
        let addr = self.emu.addr();
        let resolve: String = vaults
            .iter()
            .map(|v| format!("\"{v}.vault.azure.net\" = \"{addr}\"\n"))
            .collect();
        format!(
            r#"
[azure]
cloud = "public"
extra_ca = ["{ca}"]
kek_size = 2048
retry_base_ms = 20
{azure_extra}
[azure.resolve]
"login.microsoftonline.com" = "{addr}"
{resolve}
{more}"#,
            ca = self.ca_path.display()
        )
    }
}

/// Adds Managed HSM pool `name` to `emu` (see [`EmulatorRig::add_managed_hsm`]) and returns its
/// `[azure.resolve]` line.
pub fn add_managed_hsm(emu: &EmulatorHandle, name: &str, level: RecoveryLevel) -> String {
    emu.add_vault(
        name,
        VaultOptions {
            managed_hsm: true,
            recovery_level: level,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    format!("\"{name}.managedhsm.azure.net\" = \"{}\"\n", emu.addr())
}
