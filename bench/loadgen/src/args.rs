//! `--key value` and `--flag` options, looked up by name; nothing clever.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Options without a value.
const FLAGS: &[&str] = &["echo", "strip-proxy"];

pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let value = if FLAGS.contains(&key) {
                "yes".to_string()
            } else {
                it.next()
                    .ok_or_else(|| format!("--{key} needs a value"))?
                    .clone()
            };
            values.insert(key.to_string(), value);
        }
        Ok(Args { values })
    }

    pub fn flag(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub fn opt<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.values.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("bad value for --{key}: {v:?}")),
        }
    }

    pub fn req<T: FromStr>(&self, key: &str) -> Result<T, String> {
        self.opt(key)?.ok_or_else(|| format!("--{key} is required"))
    }

    pub fn addr(&self, key: &str) -> Result<SocketAddr, String> {
        self.req(key)
    }

    /// Seconds, fractional allowed.
    pub fn secs(&self, key: &str) -> Result<Option<Duration>, String> {
        let s: Option<f64> = self.opt(key)?;
        match s {
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(_) => Err(format!("bad value for --{key}")),
            None => Ok(None),
        }
    }
}
