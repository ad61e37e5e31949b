//! What a supervisor takes up as it starts: the `set`s a predecessor replays to it, and its
//! admin plane (the control socket and the metrics listener, adopted from a predecessor or
//! bound). Runs once, before the loop.

use std::io;

use log::info;
use mio::Registry;

use super::listeners::Bound;

use crate::admin::command::{self, Command};
use crate::admin::plane::{AdminPlane, Tokens};
use crate::config::{Config, Layers};
use crate::handoff as env;
use crate::hexdump::Address;
use crate::sys::fd::adopt_inherited;

/// The lines a predecessor replays (its accepted `set`s and upstream states), and the
/// layers its `set`s make over the process environment.
pub fn replayed() -> (Vec<String>, Layers) {
    let replay: Vec<String> = std::env::var(env::REPLAY)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    std::env::remove_var(env::REPLAY);
    let mut layers = Layers::from_process_env();
    for line in &replay {
        if let Ok(Command::Set(k, v)) = command::parse(line) {
            layers = layers.with_set(&k, &v).unwrap_or(layers);
        }
    }
    (replay, layers)
}

/// The control socket and metrics listener `cfg` names, adopted when a predecessor handed
/// them over, else bound; a failure names its key.
pub fn admin_plane(registry: &Registry, cfg: &Config, tokens: Tokens) -> io::Result<AdminPlane> {
    let mut plane = AdminPlane::new(tokens);
    let control = &cfg.control_socket;
    let owner = crate::privilege::control_socket_ownership(cfg)
        .map_err(|e| io::Error::other(e.to_string()))?;
    plane.set_control_ownership(owner);
    match adopt_inherited(env::INHERIT_CONTROL)? {
        Some(fd) => plane.adopt_control(registry, fd, control),
        None => plane.set_control(registry, control),
    }
    .map_err(|e| named("ENVOY_CONTROL_SOCKET", control, e))?;
    let metrics = cfg.metrics_addr.map_or_else(String::new, |a| a.to_string());
    match adopt_inherited(env::INHERIT_METRICS)? {
        Some(fd) => plane.adopt_metrics(registry, fd),
        None => plane.set_metrics(registry, cfg.metrics_addr),
    }
    .map_err(|e| named("ENVOY_METRICS_ADDR", &metrics, e))?;
    Ok(plane)
}

/// The start-up line, naming the first listener's address; an error when there is no
/// worker to start.
pub fn say_starting(cfg: &Config, listeners: &[Bound]) -> io::Result<()> {
    let addr = listeners
        .first()
        .filter(|_| cfg.workers > 0)
        .map(|b| b.local)
        .ok_or_else(|| io::Error::other("no worker to start (ENVOY_WORKERS)"))?;
    info!(
        target: "sluice::supervisor",
        "supervisor starting pid={} workers={} addr={}",
        std::process::id(),
        cfg.workers,
        Address(Some(addr))
    );
    Ok(())
}

/// `e`, said of the resource `key`=`value` names.
fn named(key: &str, value: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{key}={value}: {e}"))
}
