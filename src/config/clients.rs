//! The per-client limits' settings (the ENVOY_CLIENT_* keys) and how they settle onto the
//! routes once every key is read: a route that sets `client_*=` options counts its sessions
//! apart (its own scope) with its options over the keys' values; every other route, and the
//! default one, holds sessions to the keys' values, counted together.
//!
//! Values only: the keys are validated in the key table (`config`), the counting is
//! `limits`'.

use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::config::route::{Alert, Limited, Route};
use crate::limits::policy::{scope_of, Limit, Prefixes, Rate, EVERY_ROUTE};

/// The ENVOY_CLIENT_* values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ENVOY_CLIENT_MAX_SESSIONS (0: none)
    pub max_sessions: u32,
    /// ENVOY_CLIENT_RATE (`None`: off)
    pub rate: Option<Rate>,
    /// ENVOY_CLIENT_BURST (`None`: auto, the rate's N)
    pub burst: Option<u32>,
    /// ENVOY_CLIENT_PREFIX_V4, ENVOY_CLIENT_PREFIX_V6
    pub prefixes: Prefixes,
    /// ENVOY_CLIENT_ALLOW
    pub allow: Vec<Cidr>,
    /// ENVOY_CLIENT_ALERT
    pub alert: Alert,
    /// ENVOY_CLIENT_TABLE_SIZE
    pub table_size: usize,
}

impl Settings {
    /// Before any key is applied (each overwrites its field).
    pub fn unset() -> Settings {
        Settings {
            max_sessions: 0,
            rate: None,
            burst: None,
            prefixes: Prefixes { v4: 32, v6: 64 },
            allow: Vec::new(),
            alert: Alert::AccessDenied,
            table_size: 0,
        }
    }

    /// True when `ip` is never limited.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

/// Works out what each route's sessions are held to (its `limited`).
pub fn settle(s: &Settings, routes: &mut [Route], default: &mut Route) {
    for r in routes.iter_mut().chain(std::iter::once(default)) {
        let own = r.client;
        let scope = if own.any() {
            scope_of(&r.to_string())
        } else {
            EVERY_ROUTE
        };
        let limit = Limit::new(
            own.max_sessions.unwrap_or(s.max_sessions),
            own.rate.unwrap_or(s.rate),
            own.burst.or(s.burst),
            scope,
        );
        r.limited = limit.map(|limit| Limited {
            limit,
            alert: own.alert.unwrap_or(s.alert),
        });
    }
}
