//! roomcast's load harness as a library, so the binary, the `compare` command and the
//! integration tests all drive the same code.
//!
//! One mio event loop on one thread holds every client connection (thousands of them);
//! see [`engine`] for the loop, [`runner`] for what a run does from start to report.

pub mod accounting;
pub mod attack;
pub mod chart;
pub mod cli;
pub mod client;
pub mod clock;
pub mod compare;
pub mod connect_options;
pub mod deflate;
pub mod engine;
pub mod flag_check;
pub mod handshake;
pub mod layout;
pub mod payload;
pub mod proc;
pub mod progress;
pub mod report;
pub mod report_common;
pub mod runner;
pub mod scenario;
pub mod scrape;
pub mod soak;
pub mod sys;
pub mod target;
pub mod tls;
pub mod token;
pub mod wsframe;
