//! The Doorstep gRPC server: settings, wiring and handlers. `main.rs` only parses the command
//! line; tests build the same [`Application`] on port 0.

pub mod auth;
mod backend;
pub mod clock;
pub mod complaint_log;
mod complaints;
pub mod console;
mod contractors;
mod convert;
pub mod error;
mod escalations;
mod events;
pub mod generations;
mod inspections;
pub mod middleware;
pub mod notifier;
mod observability;
/// Public for the fuzz targets in `fuzz/`; nothing else outside the crate uses it.
pub mod parse;
mod performance;
pub mod ports;
pub mod privacy;
pub mod quickstart;
pub mod registration;
pub mod report;
mod request;
pub mod settings;
pub mod startup;
mod visits;

pub use settings::Settings;
pub use startup::{Application, StartupError};
