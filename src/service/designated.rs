//! The designated-device rule as a proof: [`Designated`] says this appliance may change the
//! cloud. It is made in one place, [`Service::designated_device`], from the designated setting
//! read under the state lock; every job that changes the cloud is submitted with it, so no
//! caller can forget the check. It cannot be made anywhere else:
//!
//! ```compile_fail
//! let forged = byokd::service::Designated(());
//! ```
//!
//! The rule: `designated` in byokd.toml is the default; a different value set through the API
//! (`byokctl designated set`) is kept in the state and overrides the file; setting the file's
//! value through the API clears the override, so the file applies again. [`DesignatedSetting`]
//! says which applies, so `status` shows it, the daemon logs it at start-up when the two
//! disagree, and `check-config` warns about it.

use super::Service;
/// Where the designated setting in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesignatedSource {
    /// `designated` in byokd.toml (no value was set through the API).
    File,
    /// A value an admin set through the API; it overrides the file.
    Api,
}

/// The designated setting in force, where it comes from, and what the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesignatedSetting {
    pub value: bool,
    pub source: DesignatedSource,
    /// `designated` in byokd.toml.
    pub file: bool,
}

impl DesignatedSetting {
    /// The setting from the file's value and the value set through the API, if any.
    pub fn resolve(file: bool, api: Option<bool>) -> Self {
        match api {
            Some(value) => Self {
                value,
                source: DesignatedSource::Api,
                file,
            },
            None => Self {
                value: file,
                source: DesignatedSource::File,
                file,
            },
        }
    }

    /// What to tell the operator when the API's value overrides a different file value.
    pub fn disagreement(&self) -> Option<String> {
        (self.source == DesignatedSource::Api && self.value != self.file).then(|| {
            format!(
                "designated = {} in byokd.toml is overridden by the value set through the API ({}); `byokctl designated set {}` returns to the file's value, or set designated = {} in the file",
                self.file,
                self.value,
                self.file,
                self.value
            )
        })
    }
}

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
        if self.designated_setting().await.value {
            Ok(Designated(()))
        } else {
            Err(NotDesignated)
        }
    }

    /// The designated setting in force and where it comes from, read under the state lock.
    pub async fn designated_setting(&self) -> DesignatedSetting {
        let data = self.inner.data.lock().await;
        DesignatedSetting::resolve(self.inner.config.designated, data.state.designated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_the_default_and_the_api_overrides_it_and_says_so() {
        let s = DesignatedSetting::resolve(false, None);
        assert_eq!((s.value, s.source), (false, DesignatedSource::File));
        assert_eq!(s.disagreement(), None);
        let s = DesignatedSetting::resolve(false, Some(true));
        assert_eq!((s.value, s.source), (true, DesignatedSource::Api));
        let told = s.disagreement().unwrap_or_default();
        assert!(
            told.contains("designated = false in byokd.toml is overridden"),
            "{told}"
        );
        assert_eq!(
            DesignatedSetting::resolve(true, Some(true)).disagreement(),
            None
        );
    }
}
