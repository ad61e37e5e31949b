//! The admin plane: what operators and the supervisor use to see into and steer a running
//! sluice — control commands, trace rules, admin connections, metrics, captures. One plane
//! serves a worker's loop and the supervisor's alike; what differs is who answers.

pub mod capture;
pub mod channel;
pub mod command;
pub mod conn;
pub mod metrics;
pub mod plane;
pub mod reply;
pub mod report;
pub mod status;
pub mod trace;
pub mod upstreams;
