//! The ENVOY_CONFIG_FILE format: `KEY=VALUE` lines, read at start and on every reload.
//!
//! A `#` at the start of a line, or after a blank in a value, starts a comment that runs to
//! the end of the line (`ENVOY_PORT=443   # the LB's port`), as in a shell; a value in double
//! quotes keeps everything between them, `#` and blanks included (`ENVOY_HEADERS="X-Tag: #1"`).
//! A `#` inside a word (`a#b`) is part of the value. There are no escapes. This is the syntax
//! only: which keys exist and what their values mean is the key table's business, and every
//! line that cannot be read is returned, not just the first. No I/O here.

/// One `KEY=VALUE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// 1-based.
    pub line: usize,
    /// Trimmed.
    pub key: &'a str,
    /// Without its quotes or comment, trimmed (inside quotes: as written).
    pub value: &'a str,
}

/// A line that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine<'a> {
    /// 1-based.
    pub line: usize,
    /// The line, trimmed.
    pub text: &'a str,
    /// Why.
    pub reason: &'static str,
}

/// Every setting of `text`, and every line that is none, in line order.
pub fn parse(text: &str) -> (Vec<Entry<'_>>, Vec<BadLine<'_>>) {
    let (mut entries, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once('=')
            .ok_or("not KEY=VALUE")
            .and_then(|(k, v)| Ok((k.trim(), value(v)?)));
        match parsed {
            Ok((key, value)) => entries.push(Entry {
                line: i + 1,
                key,
                value,
            }),
            Err(reason) => bad.push(BadLine {
                line: i + 1,
                text: line,
                reason,
            }),
        }
    }
    (entries, bad)
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

    fn one(line: &str) -> Result<&str, &'static str> {
        match parse(line) {
            (e, b) if b.is_empty() => Ok(e[0].value),
            (_, b) => Err(b[0].reason),
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
            assert_eq!(one(line), Ok(value), "{line}");
        }
    }

    #[test]
    fn every_bad_line_is_returned_with_its_number() {
        let text = "# a comment\n\nENVOY_X=1\nnonsense\nENVOY_PORT=\"443\nENVOY_IP=\"::1\" x\nENVOY_PORT=9\n";
        let (entries, bad) = parse(text);
        assert_eq!(
            entries,
            [
                Entry {
                    line: 3,
                    key: "ENVOY_X",
                    value: "1"
                },
                Entry {
                    line: 7,
                    key: "ENVOY_PORT",
                    value: "9"
                }
            ]
        );
        let bad: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason)).collect();
        assert_eq!(
            bad,
            [
                (4, "not KEY=VALUE"),
                (5, "a double quote that does not close"),
                (6, "text after the closing quote (a comment starts with #)"),
            ]
        );
    }
}
