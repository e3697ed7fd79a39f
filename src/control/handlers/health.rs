//! `/v1/health` (liveness and readiness, with HSM and state status) and `/v1/whoami`. Any
//! mapped identity may call them; a client without a certificate cannot connect at all.

use super::{Ctx, Reply};
use crate::contract::{DesignatedSource, Health, HsmHealth, StateHealth, Whoami};
use crate::control::authz::{AnyRole, Authorized};
use crate::control::errors::ApiError;
use crate::control::identity::{Caller, role_name};
use crate::secret::SecretBytes;
use std::time::Duration;

/// How long the HSM probe may take before the HSM counts as not ready.
const HSM_PROBE: Duration = Duration::from_secs(3);

pub async fn health(_: Authorized<AnyRole>, ctx: &Ctx) -> Result<Reply, ApiError> {
    let hsm = ctx.service.hsm();
    // A round trip through the HSM worker: seal one byte with the token's sealing key.
    let probe = tokio::time::timeout(
        HSM_PROBE,
        hsm.seal(b"byokd health probe", &SecretBytes::new(vec![0])),
    )
    .await;
    let (hsm_ready, hsm_detail) = match probe {
        Ok(Ok(_)) => (true, "ok".to_owned()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, format!("no answer within {} s", HSM_PROBE.as_secs())),
    };
    let report = hsm.report();
    let generation = ctx.service.generation().await;
    let logs = crate::logs::installed().map(|l| l.status());
    let degraded = logs.as_ref().is_some_and(|l| l.degraded);
    let designated = ctx.service.designated_setting().await;
    Reply::ok(&Health {
        live: true,
        ready: hsm_ready,
        degraded,
        logs,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        designated: designated.value,
        designated_source: match designated.source {
            crate::service::DesignatedSource::File => DesignatedSource::File,
            crate::service::DesignatedSource::Api => DesignatedSource::Api,
        },
        designated_file: designated.file,
        hsm: HsmHealth {
            ready: hsm_ready,
            detail: hsm_detail,
            token: report.token_label.clone(),
            model: report.model.clone(),
            serial: report.serial.clone(),
            wrap_strategy: hsm.wrap_strategy(),
            wrap_summary: hsm.wrap_report().summary(),
            wrap_report: hsm.wrap_report().clone(),
        },
        state: StateHealth {
            ready: true,
            generation,
        },
    })
}

pub fn whoami(auth: Authorized<AnyRole>, caller: &Caller) -> Result<Reply, ApiError> {
    Reply::ok(&Whoami {
        identity: auth.name().to_owned(),
        role: role_name(auth.identity().role).to_owned(),
        fingerprint: caller.fingerprint.clone(),
        cn: caller.cn.clone(),
    })
}
