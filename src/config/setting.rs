//! One key's value as one layer gave it ([`Setting`]), and the small checks every key's
//! parser shares (trimmed parsing, whole numbers in a range). Refusals name the key.

use super::error::{error, ConfigError};
use super::upstream::Resolve;

/// A key's value as one layer gave it, with the key's name for the errors it may cause.
#[derive(Clone, Copy)]
pub struct Setting<'a> {
    pub key: &'static str,
    /// As given: the error shows it so, parsing trims it.
    pub text: &'a str,
    /// Who answers for the names the value holds (upstreams, a syslog collector).
    pub names: &'a dyn Resolve,
}

impl Setting<'_> {
    /// The whole value refused for `reason`.
    pub fn refuse(&self, reason: impl Into<String>) -> ConfigError {
        self.refuse_part(self.text, reason)
    }

    /// Refused for `reason`, showing `part` (a route of many, a path) as the value.
    pub fn refuse_part(&self, part: &str, reason: impl Into<String>) -> ConfigError {
        error(self.key, part, reason)
    }

    /// The trimmed value through `f`; `None` refuses the value for `reason`.
    pub fn parse<T>(
        &self,
        reason: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        f(self.text.trim()).ok_or_else(|| self.refuse(reason))
    }

    /// A decimal number in `min..=max`.
    pub fn whole_number(&self, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.refuse(format!("expected a whole number from {min} to {max}"))),
        }
    }
}
