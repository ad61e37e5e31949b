//! What a command prints: one JSON line of figures, latency percentiles, own CPU time.
//!
//! Written by hand (a flat object of numbers and strings) to keep the generator's
//! dependencies to mio, slab and libc.

use std::fmt::Write as _;
use std::time::Duration;

/// A flat JSON object, built field by field in order.
pub struct Line {
    text: String,
}

impl Line {
    pub fn new(mode: &str) -> Line {
        let mut line = Line {
            text: String::from("{"),
        };
        line.str("mode", mode);
        line
    }

    fn key(&mut self, key: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        let _ = write!(self.text, "\"{key}\":");
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Line {
        self.key(key);
        // Values are our own words and socket addresses: nothing to escape but quotes.
        let _ = write!(self.text, "\"{}\"", value.replace('"', "'"));
        self
    }

    pub fn int(&mut self, key: &str, value: u64) -> &mut Line {
        self.key(key);
        let _ = write!(self.text, "{value}");
        self
    }

    pub fn num(&mut self, key: &str, value: f64) -> &mut Line {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.text, "{value:.3}");
        } else {
            self.text.push_str("null");
        }
        self
    }

    /// `p50_us`, `p99_us`, `p999_us`, `max_us` of `samples` (nanoseconds; sorted here).
    pub fn percentiles(&mut self, samples: &mut [u64]) -> &mut Line {
        samples.sort_unstable();
        for (name, q) in [("p50_us", 0.50), ("p99_us", 0.99), ("p999_us", 0.999)] {
            let v = percentile(samples, q);
            self.num(name, v.map_or(f64::NAN, |ns| ns as f64 / 1e3));
        }
        let max = samples.last().map_or(f64::NAN, |&ns| ns as f64 / 1e3);
        self.num("max_us", max)
    }

    /// The process's own user + system CPU time so far.
    pub fn own_cpu(&mut self) -> &mut Line {
        self.int("loadgen_cpu_us", own_cpu_us())
    }

    pub fn print(&mut self) {
        self.text.push('}');
        println!("{}", self.text);
        self.text.pop();
    }
}

/// Nearest-rank percentile: the smallest sample with at least `q` of the samples at or below.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn own_cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&[7], 0.999), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
