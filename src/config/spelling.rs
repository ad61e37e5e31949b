//! Names that look like keys but are not: the nearest of the key names, so that a typo
//! (`ENVOY_PORTT`) is answered with `did you mean ENVOY_PORT?`. Only suggests; never decides
//! what a name means (the key table, which hands its names in, does).

/// How many single-character edits a name may be from a key to be suggested: enough for a
/// typo or two, not so many that any `ENVOY_` name gets a key that happens to be short.
const MAX_EDITS: usize = 3;

/// The key of `keys` nearest to `name` (case aside first, then by edit distance), if one is
/// near; the first of equally near ones.
pub fn nearest<'k>(name: &str, keys: &[&'k str]) -> Option<&'k str> {
    if let Some(k) = keys.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some(k);
    }
    let upper = name.to_ascii_uppercase();
    keys.iter()
        .map(|k| (edits(upper.as_bytes(), k.as_bytes()), *k))
        .filter(|(d, _)| *d <= MAX_EDITS)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean KEY?)` for a near key, else nothing: to append to a message.
pub fn suggestion(name: &str, keys: &[&str]) -> String {
    nearest(name, keys).map_or_else(String::new, |k| format!(" (did you mean {k}?)"))
}

/// The warning for a variable of the environment that starts with `ENVOY_` and is no key.
pub fn unknown_variable(name: &str, keys: &[&str]) -> String {
    let hint = match nearest(name, keys) {
        Some(k) => format!("did you mean {k}?"),
        None => "see `sluice check-config` for the keys".to_string(),
    };
    format!(
        "{} is set in the environment but is not a key (ignored); {hint}",
        crate::hexdump::Escaped(name.as_bytes())
    )
}

/// Levenshtein distance: insertions, deletions and substitutions, one byte each.
fn edits(a: &[u8], b: &[u8]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = i;
        let mut left = i + 1;
        for (cb, above) in b.iter().zip(row.iter_mut().skip(1)) {
            let best = if ca == cb {
                diagonal
            } else {
                1 + diagonal.min(*above).min(left)
            };
            diagonal = *above;
            *above = best;
            left = best;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_single_edits() {
        assert_eq!(edits(b"", b""), 0);
        assert_eq!(edits(b"abc", b""), 3);
        assert_eq!(edits(b"kitten", b"sitting"), 3);
        assert_eq!(edits(b"ENVOY_PORTT", b"ENVOY_PORT"), 1);
        assert_eq!(edits(b"ENVOY_PROT", b"ENVOY_PORT"), 2);
    }

    const KEYS: &[&str] = &[
        "ENVOY_IP",
        "ENVOY_PORT",
        "ENVOY_UPSTREAM",
        "ENVOY_LOG_LEVEL",
        "ENVOY_WORKERS",
        "ENVOY_METRICS_ADDR",
        "ENVOY_CAPTURE_DIR",
        "ENVOY_CAPTURE_MAX_FILES",
    ];

    #[test]
    fn typos_get_the_nearest_key_and_strangers_get_none() {
        for (typo, key) in [
            ("ENVOY_PORTT", "ENVOY_PORT"),
            ("ENVOY_port", "ENVOY_PORT"),
            ("ENVOY_UPSTREM", "ENVOY_UPSTREAM"),
            ("ENVOY_WORKER", "ENVOY_WORKERS"),
            ("ENVOY_CAPTURE_DIRS", "ENVOY_CAPTURE_DIR"),
            ("ENVOY_METRIC_ADDR", "ENVOY_METRICS_ADDR"),
            ("ENVOY_LOGLEVEL", "ENVOY_LOG_LEVEL"),
        ] {
            assert_eq!(nearest(typo, KEYS), Some(key), "{typo}");
        }
        assert_eq!(nearest("ENVOY_SOMETHING_ELSE_ENTIRELY", KEYS), None);
        assert_eq!(
            suggestion("ENVOY_PORTT", KEYS),
            " (did you mean ENVOY_PORT?)"
        );
        assert_eq!(suggestion("ENVOY_NOTHING_NEAR", KEYS), "");
        assert_eq!(
            unknown_variable("ENVOY_PORTT", KEYS),
            "ENVOY_PORTT is set in the environment but is not a key (ignored); did you mean ENVOY_PORT?"
        );
    }
}
