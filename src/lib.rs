//! byokd: brings HSM-generated keys to Azure Key Vault with Azure's BYOK protocol, and manages
//! them from the appliance.
#![forbid(unsafe_code)]

pub mod azure;
pub mod clock;
pub mod config;
pub mod contract;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod dual_control;
pub mod hsm;
pub mod jobs;
pub mod logs;
pub mod model;
pub mod secret;
pub mod service;
pub mod store;
pub mod system;
pub mod upgrade;
