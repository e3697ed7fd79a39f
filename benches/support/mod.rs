//! Code the benchmarks share.
#![allow(dead_code)]

pub mod client;
pub mod control;
pub mod seed;
pub mod startup;
