//! Policy as code: the per-tenant policy document (`document.rs`), its parser and linter
//! (`parse.rs`, every problem reported with its line), and the pure evaluation of registrations,
//! sign-ins and step-up against it (`evaluate.rs`). Each decision names the rules behind it.
//!
//! Status: the engine and its format are here and tested; wiring it into registration, sign-in,
//! step-up endpoints and the `keyplane policy` commands is the rest of issue 5.

mod document;
mod evaluate;
mod parse;
mod simulate;

pub use document::*;
pub use evaluate::*;
pub use parse::{parse, LintError};
pub use simulate::*;
