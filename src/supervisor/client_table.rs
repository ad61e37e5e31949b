//! The machine's client table as a supervisor starts: the predecessor's when an upgrade
//! handed one over that fits, else a new one. Never touches a worker.

use std::io;

use log::info;

use crate::config::Config;
use crate::handoff as env;
use crate::limits::{self, ClientTable};
use crate::logfmt::Value;
use crate::sys::fd::adopt_inherited;

/// The client table: the predecessor's when an upgrade handed one over that fits (same
/// layout and size, a free ledger for each new worker), else a new one (said at info: the
/// counts then start afresh, the old generation keeps its own until it is gone).
pub fn client_table(cfg: &Config) -> io::Result<ClientTable> {
    let fits = |t: &ClientTable| {
        let held = t.ledgers_held(crate::sys::process::is_alive);
        if t.capacity() != cfg.clients.table_size {
            Err(format!(
                "{} entries, not ENVOY_CLIENT_TABLE_SIZE={}",
                t.capacity(),
                cfg.clients.table_size
            ))
        } else if t.ledgers() < held + cfg.workers {
            Err(format!(
                "{} of its {} ledgers held, {} workers to start",
                held,
                t.ledgers(),
                cfg.workers
            ))
        } else {
            Ok(())
        }
    };
    if let Some(fd) = adopt_inherited(env::INHERIT_CLIENT_TABLE)? {
        match ClientTable::adopt(fd)
            .map_err(|e| e.to_string())
            .and_then(|t| fits(&t).map(|()| t))
        {
            Ok(t) => {
                info!(
                    "client table kept from the predecessor entries={}",
                    t.capacity()
                );
                return Ok(t);
            }
            Err(e) => info!(
                "client table from the predecessor not kept, counting afresh reason={}",
                Value::str(&e)
            ),
        }
    }
    let bytes = limits::table_bytes(cfg.clients.table_size, cfg.workers);
    ClientTable::create(cfg.clients.table_size, cfg.workers).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "ENVOY_CLIENT_TABLE_SIZE={}: a table of {bytes} bytes: {e}",
                cfg.clients.table_size
            ),
        )
    })
}
