//! The control API: HTTP/1.1 + JSON over TLS 1.3 with required client certificates, on a TCP
//! port and optionally a unix socket. Identity comes from the client certificate, roles from
//! the configured mapping; destructive actions need dual control.
//!
//! Owns: the server (`server`, `tls`, `limits`), fair shares of it (`fairness`), aggregated
//! refusals (`failures`: of peers without a mapped certificate, per address; cross-origin
//! requests and authorization denials, per identity), the cross-site request defence
//! (`browser`), who the caller is (`identity`), what they may
//! do (`authz`), the route table (`routes`), request decoding
//! (`decode`), the handlers, errors, the API document (`openapi`), and the web console's
//! compiled-in files and headers (`ui`).
//! Must never: run a handler without an `Authorized` proof, accept a client without a
//! certificate chaining to the console CA, echo a secret, or let a limit turn into a hang.

pub mod authz;
pub mod browser;
pub mod decode;
pub mod errors;
pub mod failures;
pub mod fairness;
pub mod handlers;
pub mod identity;
pub mod limits;
pub mod openapi;
pub mod routes;
mod server;
pub(crate) mod tls;
pub mod ui;

pub use errors::{ApiError, ControlError};
pub use server::{ControlServer, start};
