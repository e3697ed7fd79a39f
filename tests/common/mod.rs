//! Shared integration-test fixtures. Each test binary includes this with `mod common;` and uses
//! the parts it needs.
// Each test binary uses a different subset; a failed set-up is a failed test, so fixtures may
// panic with a message.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod kryoptic;
pub mod softhsm;
pub mod wrapcheck;
