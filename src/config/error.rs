//! A refused value ([`ConfigError`]: the key, the value as given, the reason) and every
//! value one load refused ([`ConfigErrors`]), as people read them. Values only.

use std::fmt;

/// A key and value that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `ENVOY_PORT`.
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: {}",
            self.key,
            crate::hexdump::Escaped(self.value.as_bytes()).to_string(),
            self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every value one load refused: the config file's lines first, then the keys in table
/// order. Shown on one line, `; `-separated (a control reply, a log line); start-up prints
/// them one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Each error, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The error for `key`=`value`, refused for `reason`.
pub fn error(key: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}
