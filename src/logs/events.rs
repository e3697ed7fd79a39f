//! The one catalogue of service-log event codes: every `event = "…"` a producer logs, and every
//! code the log writes itself, with what it means. `docs/events.md` is generated from it (a test
//! keeps the two equal), and a test greps `src/` so that no code is used that is not listed here.
//!
//! New producers log `event = Event::X.as_str()`; the catalogue never decides what is logged.

/// Defines [`Event`] from one list of `Variant => "code", "meaning"`.
macro_rules! catalogue {
    ($($variant:ident => $code:literal, $meaning:literal;)*) => {
        /// A service-log event code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $($variant),*
        }

        impl Event {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Event] = &[$(Event::$variant),*];

            /// The dotted code as records carry it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Event::$variant => $code),*
                }
            }

            /// What a record with this code says happened.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Event::$variant => $meaning),*
                }
            }
        }
    };
}

catalogue! {
    // Control plane: authentication and authorization.
    ControlAuthFailed => "control.auth.failed", "A TLS handshake on the control socket was refused (no or an untrusted client certificate), or a request came with a certificate of the console CA that maps to no identity (403).";
    ControlAuthFailedSummary => "control.auth.failed.summary", "Handshake failures and unmapped-certificate requests from one peer address (or from the overflow of tracked addresses) in one window, beyond the first few recorded one by one: count, first and last time, last error.";
    ControlAuthzDenied => "control.authz.denied", "An identity called a route its role does not allow (403). The first few per identity and window are recorded one by one.";
    ControlAuthzDeniedSummary => "control.authz.denied.summary", "Authorization denials of one identity in one window, beyond the first few recorded one by one: count, first and last time, the last request.";
    ControlCrossOriginRefused => "control.cross_origin.refused", "A request from a browser context of another site (foreign Origin, cross-site or same-site Sec-Fetch-Site, or a CORS preflight) was refused (403). The first few per identity and window are recorded one by one.";
    ControlCrossOriginRefusedSummary => "control.cross_origin.refused.summary", "Cross-origin refusals through one identity's browser in one window, beyond the first few recorded one by one: count, first and last time, the last request.";
    // Dual control.
    ApprovalRequested => "approval.requested", "An admin requested a dual-control action; it waits for a second admin. Names the approval and its target.";
    ApprovalApproved => "approval.approved", "A second, different admin approved a dual-control action; it runs now.";
    ApprovalRefused => "approval.refused", "An approval was refused (self-approval, expired, already decided, or unknown id).";
    ApprovalRejected => "approval.rejected", "An admin rejected (or the requester withdrew) a dual-control action.";
    ApprovalWithdrawn => "approval.withdrawn", "A pending approval was withdrawn because its waiting job was cancelled.";
    ApprovalExpired => "approval.expired", "A dual-control request expired without a second admin's approval.";
    ApprovalExecuted => "approval.executed", "An approved action ran; the record says whether it succeeded and why not.";
    // Configuration, credentials, groups, keys.
    ConfigDesignatedChanged => "config.designated_changed", "An admin changed the designated-device setting.";
    CredentialAdded => "credential.added", "An admin added a client-secret credential (sealed in the HSM).";
    CredentialCertificateCreated => "credential.certificate.created", "An admin added a certificate credential (key pair generated in the HSM).";
    CredentialExpiryChanged => "credential.expiry_changed", "An admin set or cleared a credential's expiry.";
    CredentialVerified => "credential.verified", "Entra ID accepted a sign-in with a credential that was recorded as unverified (added with --no-verify, a certificate credential, or through the API without verify); it shows as verified from now on.";
    CredentialRefused => "credential.refused", "A credential was not added because Entra ID refused its sign-in; the record carries Entra's reason (never the secret).";
    CredentialDeleted => "credential.deleted", "A credential was deleted (after a second admin's approval).";
    GroupCreated => "group.created", "A key group was created.";
    GroupUpdated => "group.updated", "A key group's rotation policy was changed.";
    GroupDeleted => "group.deleted", "An empty key group was deleted (local only).";
    KeyCreated => "key.created", "A key was generated in the HSM for a group.";
    KeyDeleted => "key.deleted", "A key was deleted locally (the cloud is untouched); a pushed key only after a second admin's approval.";
    KeyByokExportRequested => "key.byok_export.requested", "An admin asked to export a key as a .byok file for an offline import; it waits for a second admin. Names the key, the KEK's kid and the approval.";
    KeyByokExportApproved => "key.byok_export.approved", "A second, different admin approved a .byok export; the key is wrapped in the HSM now.";
    KeyByokExported => "key.byok_exported", "A key was wrapped inside the HSM under the named KEK into a .byok file (as a push wraps it); names both admins, the kid and the key's check digits.";
    KeyByokExportRefused => "key.byok_export.refused", "A .byok export was refused: a KEK file that is not an RSA 2048/3072/4096 public key, a kid outside the group's target, not the designated device, or a wrap that failed.";
    KeyByokDownloaded => "key.byok_downloaded", "The requester downloaded the .byok file of an approved export.";
    KeyImportRecorded => "key.import_recorded", "The Azure version a manual (.byok) import made was recorded for a key, after Azure showed that version with the HSM key's public key.";
    KeyImportRecordRefused => "key.import_record.refused", "Recording a manual import was refused: Azure has no such version, or its public key is not the HSM key's.";
    // Jobs.
    JobCreated => "job.created", "A job was created (sync, rotation, delete on cloud, drift check, recover, purge).";
    JobApproved => "job.approved", "A job waiting for approval was approved and queued.";
    JobApprovalEnded => "job.approval_ended", "A job waiting for approval was cancelled (approval rejected, expired or lost at a restart).";
    JobCancel => "job.cancel", "A cancel of a job was requested.";
    JobPruned => "job.pruned", "Finished jobs were pruned by retention.";
    JobsSucceeded => "jobs.succeeded", "A synchronization job succeeded.";
    JobsFailed => "jobs.failed", "A job failed.";
    JobsCancelled => "jobs.cancelled", "A started job stopped at a safe point after a cancel.";
    // Rotation and drift.
    RotationScheduled => "rotation.scheduled", "A scheduled rotation started.";
    RotationSkipped => "rotation.skipped", "A due rotation was skipped (not the designated device).";
    RotationKeyGenerated => "rotation.key_generated", "A rotation generated its new key in the HSM.";
    RotationSucceeded => "rotation.succeeded", "A rotation pushed its new key as the current version.";
    RotationFailed => "rotation.failed", "A rotation failed or could not start; the last rotation is unchanged.";
    RotationGraceSkipped => "rotation.grace_skipped", "A grace period ended on a non-designated appliance; nothing was disabled.";
    RotationGraceFailed => "rotation.grace_failed", "Disabling previous versions after the grace period failed; retried later.";
    DriftFound => "drift.found", "A cloud-state check found a difference between Azure and the appliance.";
    DriftClean => "drift.clean", "A cloud-state check found Azure matching the appliance.";
    // Azure.
    AzureRetry => "azure.retry", "An Azure request was retried (throttling or a transient failure).";
    AzureTokenAcquired => "azure.token.acquired", "An access token was acquired from Entra ID.";
    AzureTokenReused => "azure.token.reused", "A cached access token was reused.";
    AzureTokenRefused => "azure.token.refused", "Entra ID refused the credential.";
    AzureKekCreated => "azure.kek.created", "A key exchange key was created in the vault.";
    AzureKekDeleted => "azure.kek.deleted", "A key exchange key was deleted.";
    AzureKekPurged => "azure.kek.purged", "A deleted key exchange key was purged.";
    AzureKekNotPurged => "azure.kek.not_purged", "A key exchange key could not be purged (purge protection or no soft-delete).";
    AzureKeyImported => "azure.key.imported", "A key was imported into Azure (BYOK) as a new version.";
    AzureKeyDeleted => "azure.key.deleted", "A group's Azure key was deleted (all versions).";
    AzureKeyDeleteFailed => "azure.key.delete_failed", "A delete on cloud failed.";
    AzureKeyPurged => "azure.key.purged", "A soft-deleted Azure key was purged for good.";
    AzureKeyNotPurged => "azure.key.not_purged", "A deleted Azure key was not (or cannot be) purged.";
    AzureKeyPurgeFailed => "azure.key.purge_failed", "A purge failed.";
    AzureKeyRecovered => "azure.key.recovered", "A soft-deleted Azure key was recovered.";
    AzureKeyRecoverFailed => "azure.key.recover_failed", "A recovery failed.";
    AzureKeyVersionDisabled => "azure.key.version_disabled", "A previous version was disabled after the grace period.";
    AzureKeyVersionMissing => "azure.key.version_missing", "A previous version to disable was no longer in Azure.";
    // HSM.
    HsmWrapHost => "hsm.wrap.host", "A key was wrapped in host memory (hsm.allow_host_wrap).";
    HsmKeyUnrecordedDestroyed => "hsm.key.unrecorded_destroyed", "An HSM key generated before a restart but never recorded was destroyed.";
    // The log itself.
    LogExported => "log.exported", "The service log was exported.";
    LogExportFailed => "log.export.failed", "An export of the service log broke off.";
    LogRepaired => "log.repaired", "An incomplete last record was cut off at start-up.";
    LogUnattributedRefused => "log.unattributed.refused", "Records of peers without a certificate reached their share of the log's size bound; further ones are refused (counted in health) so they never push attributed records out.";
    LogDropped => "log.dropped", "The log reached its size bound; the oldest segments were dropped.";
    LogWriteRecovered => "log.write.recovered", "The log store accepts records again; says how many were lost.";
    LogForwardDropped => "log.forward.dropped", "Records were dropped while a syslog collector was unreachable.";
    // System.
    SystemStarted => "system.started", "byokd started.";
    SystemStopping => "system.stopping", "byokd is stopping.";
    StateMigrated => "state.migrated", "The state was migrated to the current format.";
    StateCommitFailed => "state.commit.failed", "A state commit failed (disk full or failing); every later change is refused until byokd restarts and reloads the durable state.";
    BackupCreated => "backup.created", "An admin took an online backup of the state and the service log; says how many records and log segments it holds and which state generation.";
    BackupFailed => "backup.failed", "An online backup broke off (the client went away, or reading the state, the log or sealing the digest failed).";
    StateRestored => "state.restored", "`byokd restore` restored a backup into the state directory after checking its seal and that the token holds every object the state names.";
    StateRestoreRefused => "state.restore.refused", "`byokd restore` refused a backup: damaged, truncated or tampered with, sealed by another token, objects missing from the token, or the state directory not empty.";
    UpgradeStage => "upgrade.stage", "An upgrade bundle was staged.";
    UpgradeInstalled => "upgrade.installed", "An upgrade was installed.";
    UpgradeRollback => "upgrade.rollback", "An upgrade was rolled back.";
}

impl Event {
    /// The event with this code, if it is in the catalogue.
    pub fn parse(code: &str) -> Option<Event> {
        Event::ALL.iter().copied().find(|e| e.as_str() == code)
    }

    /// `docs/events.md`, as generated from the catalogue.
    pub fn markdown() -> String {
        let mut out = String::from(
            "# Service-log event codes\n\n\
             Generated from `src/logs/events.rs` (the one catalogue; a test keeps this file equal \
             to it). Every record of the service log carries one of these codes, with the \
             identity, job, group, key, credential, approval, vault, kid and version where they \
             apply.\n\n\
             | Code | Meaning |\n|---|---|\n",
        );
        for e in Event::ALL {
            out.push_str(&format!("| `{}` | {} |\n", e.as_str(), e.meaning()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn codes_are_unique_and_dotted() {
        let mut seen = BTreeSet::new();
        for e in Event::ALL {
            assert!(seen.insert(e.as_str()), "{} listed twice", e.as_str());
            assert!(
                e.as_str().contains('.')
                    && e.as_str()
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{}",
                e.as_str()
            );
            assert_eq!(Event::parse(e.as_str()), Some(*e));
        }
    }

    /// The code literals of one source file outside its tests and doc comments: `event = "…"`
    /// and a literal third argument of `Entry::new(…)`; and how many events it logs in all
    /// (literals and catalogue uses).
    fn literals(text: &str) -> (Vec<String>, usize) {
        let body = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = body
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = Vec::new();
        for (i, _) in code.match_indices("event = \"") {
            let rest = &code[i + "event = \"".len()..];
            out.push(rest.split('"').next().unwrap_or("").to_owned());
        }
        let mut all = code.matches("event = ").count();
        for (i, _) in code.match_indices("Entry::new(") {
            all += 1;
            let third = code[i + "Entry::new(".len()..]
                .split(',')
                .nth(2)
                .unwrap_or("");
            if let Some(lit) = third.trim().strip_prefix('"') {
                out.push(lit.split('"').next().unwrap_or("").to_owned());
            }
        }
        (out, all)
    }

    #[test]
    fn every_code_in_the_sources_is_in_the_catalogue() {
        let mut files = Vec::new();
        crate::clock::rust_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut unknown = Vec::new();
        let mut found = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let (codes, all) = literals(&text);
            found += all;
            for code in codes {
                if Event::parse(&code).is_none() {
                    unknown.push(format!("{}: {code}", f.display()));
                }
            }
        }
        assert!(found > 50, "the scan found only {found} events");
        assert!(
            unknown.is_empty(),
            "event codes not in src/logs/events.rs: {unknown:#?}"
        );
    }

    #[test]
    fn the_scan_sees_literals_and_skips_tests_and_docs() {
        let src = "//! event = \"doc.only\"\nfn f() { tracing::info!(event = \"a.b\", \"x\"); \
                   Entry::new(S, L, \"c.d\", m); Entry::new(S, L, Event::X.as_str(), \"msg\"); \
                   info!(event = Event::Y.as_str()); }\n#[cfg(test)]\nmod t { event = \"t.t\" }";
        assert_eq!(literals(src), (vec!["a.b".to_owned(), "c.d".to_owned()], 4));
    }

    #[test]
    fn the_docs_list_exactly_the_catalogue() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events.md");
        let want = Event::markdown();
        if std::env::var_os("BYOKD_WRITE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let got = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            got == want,
            "docs/events.md differs from the catalogue; regenerate it with \
             `BYOKD_WRITE_DOCS=1 cargo test --lib logs::events`"
        );
    }
}
