//! The admin plane: what operators and the supervisor use to see into and steer a running
//! sluice — control commands, trace rules, admin connections, metrics, captures.

pub mod capture;
pub mod command;
pub mod conn;
pub mod metrics;
pub mod trace;
