//! The designated-device rule as a proof: [`Designated`] says this appliance may change the
//! cloud. It is made in one place, [`Service::designated_device`], from the designated setting
//! read under the state lock; every job that changes the cloud is submitted with it, so no
//! caller can forget the check. It cannot be made anywhere else:
//!
//! ```compile_fail
//! let forged = byokd::service::Designated(());
//! ```

use super::Service;

/// Proof that this appliance was the designated device when the proof was made. Not `Clone`:
/// each cloud-changing submission takes a fresh one.
#[derive(Debug)]
pub struct Designated(());

/// This appliance is not the designated device.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "this appliance is not the designated device, so it does not change the cloud; set `designated = true` (or `byokctl designated set true`) on the one appliance that should"
)]
pub struct NotDesignated;

impl Service {
    /// The proof that this appliance is the designated device (the runtime setting, else the
    /// configuration file), read under the state lock.
    pub async fn designated_device(&self) -> Result<Designated, NotDesignated> {
        let data = self.inner.data.lock().await;
        let designated = data
            .state
            .designated
            .unwrap_or(self.inner.config.designated);
        if designated {
            Ok(Designated(()))
        } else {
            Err(NotDesignated)
        }
    }

    /// Where the designated setting comes from: `"state"` once an admin set it at run time,
    /// else `"config"` (the configuration file's `designated`).
    pub async fn designated_source(&self) -> &'static str {
        if self.inner.data.lock().await.state.designated.is_some() {
            "state"
        } else {
            "config"
        }
    }
}
