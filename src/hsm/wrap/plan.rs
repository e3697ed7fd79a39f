//! What the worker wraps with: the token's padded AES key wrap mechanism and the plan the
//! self-test made (the usable strategies and the one each key family uses).

use super::WrapStrategy;
use super::verdict::KeyFamily;
use crate::hsm::report::{CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};

/// The token's padded AES key wrap mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PadMechanism {
    /// CKM_AES_KEY_WRAP_KWP (0x210B).
    Kwp,
    /// CKM_AES_KEY_WRAP_PAD (0x210A).
    Pad,
}

impl PadMechanism {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Kwp => CKM_AES_KEY_WRAP_KWP,
            Self::Pad => CKM_AES_KEY_WRAP_PAD,
        }
    }

    pub(super) fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::Kwp => Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                MechanismType::AES_KEY_WRAP_KWP,
                None,
            )),
            Self::Pad => Mechanism::AesKeyWrapPad,
        }
    }
}

/// What the worker needs to wrap: the usable strategies with their mechanisms, and the
/// strategy each key family uses.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Some when `two-step` is usable: the token's RFC 5649 mechanism.
    pub(super) two_step: Option<PadMechanism>,
    /// Some when `host` is usable: the padded wrap the key leaves the token under.
    pub(super) host: Option<PadMechanism>,
    /// Per key family: the strategy, or why none conforms.
    pub(super) families: Vec<(KeyFamily, Result<WrapStrategy, String>)>,
    /// Why no strategy is usable (for the error), empty otherwise.
    pub(super) missing: String,
    /// `hsm.allow_host_wrap` (for the hint of a refused key family).
    pub(super) allow_host_wrap: bool,
}

impl Plan {
    pub(super) fn any(&self) -> bool {
        self.missing.is_empty()
    }

    pub(super) fn strategy_for(&self, family: KeyFamily) -> Result<WrapStrategy, String> {
        self.families
            .iter()
            .find(|(f, _)| *f == family)
            .map_or_else(
                || Err(format!("{family} was not covered by the self-test")),
                |(_, s)| s.clone(),
            )
    }
}
