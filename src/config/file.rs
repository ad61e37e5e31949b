//! The ENVOY_CONFIG_FILE format: `KEY=VALUE` lines, read at start and on every reload.
//!
//! A `#` at the start of a line, or after a blank in a value, starts a comment that runs to
//! the end of the line (`ENVOY_PORT=443   # the LB's port`), as in a shell; a value in double
//! quotes keeps everything between them, `#` and blanks included (`ENVOY_HEADERS="X-Tag: #1"`).
//! A `#` inside a word (`a#b`) is part of the value. There are no escapes. Every line that
//! cannot be read is reported, each with its line number; nothing here validates a value
//! (the key table does) or touches anything but the one file.

use std::collections::BTreeMap;

use super::{error, key_named, spelling, ConfigError};

/// The key the file's own errors are reported under.
const KEY: &str = "ENVOY_CONFIG_FILE";

/// The values of the file at `path`, or every line that could not be read.
pub(super) fn read(path: &str) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![error(KEY, path, format!("cannot read: {e}"))])?;
    parse(&text, path)
}

/// The values in `text` (the file named `path`, for the errors).
pub(super) fn parse(text: &str, path: &str) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |what: String| format!("{path} line {}: {what}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            errors.push(error(KEY, line, at("not KEY=VALUE".into())));
            continue;
        };
        let k = k.trim();
        if key_named(k).is_none() {
            let hint = spelling::suggestion(k);
            errors.push(error(KEY, k, at(format!("unknown key{hint}"))));
            continue;
        }
        match value(v) {
            Ok(v) => {
                out.insert(k.to_string(), v.to_string());
            }
            Err(why) => errors.push(error(KEY, line, at(why.into()))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The value after `=`: quoted, or up to a comment; trimmed either way.
fn value(raw: &str) -> Result<&str, &'static str> {
    let raw = raw.trim();
    if let Some(quoted) = raw.strip_prefix('"') {
        let Some((inside, after)) = quoted.split_once('"') else {
            return Err("a double quote that does not close");
        };
        let after = after.trim_start();
        if after.is_empty() || after.starts_with('#') {
            return Ok(inside);
        }
        return Err("text after the closing quote (a comment starts with #)");
    }
    // A comment starts at a `#` that follows a blank; the value itself was trimmed, so a `#`
    // first is an empty value with a comment.
    let mut end = raw.len();
    let mut prev_blank = true;
    for (at, c) in raw.char_indices() {
        if c == '#' && prev_blank {
            end = at;
            break;
        }
        prev_blank = c == ' ' || c == '\t';
    }
    Ok(raw.get(..end).unwrap_or(raw).trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<String, String> {
        match parse(line, "f") {
            Ok(m) => Ok(m.into_values().next().unwrap_or_default()),
            Err(e) => Err(e[0].to_string()),
        }
    }

    #[test]
    fn trailing_comments_end_the_value_and_quotes_keep_them() {
        for (line, value) in [
            ("ENVOY_PORT=443", "443"),
            ("ENVOY_PORT = 443 ", "443"),
            ("ENVOY_PORT=443  # the LB's port", "443"),
            ("ENVOY_PORT=443\t# tab", "443"),
            ("ENVOY_HEADERS=X-Fleet: eu-1   # two words", "X-Fleet: eu-1"),
            ("ENVOY_HEADERS=X-Tag: a#b", "X-Tag: a#b"),
            (r#"ENVOY_HEADERS="X-Tag: #1"  # kept"#, "X-Tag: #1"),
            (r#"ENVOY_HEADERS=" spaced ""#, " spaced "),
            (r#"ENVOY_HEADERS="""#, ""),
            ("ENVOY_HEADERS=", ""),
            ("ENVOY_HEADERS= # nothing", ""),
            (
                "ENVOY_ROUTES=sni=a.test allow; sni=b.test deny",
                "sni=a.test allow; sni=b.test deny",
            ),
        ] {
            assert_eq!(one(line).as_deref(), Ok(value), "{line}");
        }
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "# a comment\n\nENVOY_PORTT=1\nnonsense\nENVOY_PORT=\"443\nENVOY_IP=\"::1\" x\nENVOY_PORT=9\n";
        let errors = parse(text, "/etc/sluice/env").unwrap_err();
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                r#"invalid ENVOY_CONFIG_FILE="ENVOY_PORTT": /etc/sluice/env line 3: unknown key (did you mean ENVOY_PORT?)"#,
                r#"invalid ENVOY_CONFIG_FILE="nonsense": /etc/sluice/env line 4: not KEY=VALUE"#,
                r#"invalid ENVOY_CONFIG_FILE="ENVOY_PORT=\"443": /etc/sluice/env line 5: a double quote that does not close"#,
                r#"invalid ENVOY_CONFIG_FILE="ENVOY_IP=\"::1\" x": /etc/sluice/env line 6: text after the closing quote (a comment starts with #)"#,
            ]
        );
    }
}
