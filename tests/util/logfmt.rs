//! A strict reader of sluice's log lines, written here so that it shares nothing with the code
//! it checks: `TIMESTAMP LEVEL [target]`, then the message as logfmt: one or more free words,
//! then only `key=value` pairs, one space between any two; a value bare (printable ASCII but
//! space, `"`, `=`, `\`) or quoted with the escapes sluice documents (`\"`, `\\`, `\n`, `\r`,
//! `\t`, `\u00XX`). Printable ASCII only, no key twice. Anything else is an error naming what
//! and where.

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    pub target: String,
    /// The free words, in order.
    pub words: Vec<String>,
    /// The pairs in order, values unescaped (bytes above 0x7f as the `\u00XX` said).
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The free words, joined by a space: what happened.
    pub fn message(&self) -> String {
        self.words.join(" ")
    }

    /// The value of `key`, as text (lossy for bytes that are not UTF-8).
    pub fn get(&self, key: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }
}

fn bare(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) && b != b'"' && b != b'=' && b != b'\\'
}

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// Parses one line (without its `\n`).
pub fn parse(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    if let Some(i) = line.iter().position(|&b| !(b' '..=b'~').contains(&b)) {
        return Err(format!(
            "byte 0x{:02x} at {i} is not printable ASCII",
            line[i]
        ));
    }
    // TIMESTAMP: 2026-11-25T13:14:04.057Z
    let ts = text.get(..24).ok_or("shorter than a timestamp")?;
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    let ts_ok = ts.bytes().zip(shape.bytes()).all(|(c, s)| match s {
        b'd' => c.is_ascii_digit(),
        _ => c == s,
    });
    if !ts_ok {
        return Err(format!("timestamp {ts:?}"));
    }
    let rest = text[24..]
        .strip_prefix(' ')
        .ok_or("no space after the timestamp")?;
    let level = rest.get(..5).ok_or("no level")?;
    if !["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"].contains(&level) {
        return Err(format!("level {level:?}"));
    }
    let rest = rest[5..]
        .strip_prefix(" [")
        .ok_or("no ' [' before the target")?;
    let end = rest.find("] ").ok_or("no '] ' after the target")?;
    let target = &rest[..end];
    if target.is_empty()
        || !target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return Err(format!("target {target:?}"));
    }
    let message = &rest.as_bytes()[end + 2..];
    let (words, pairs) = parse_message(message)?;
    Ok(Record {
        timestamp: ts.to_string(),
        level: level.trim_end().to_string(),
        target: target.to_string(),
        words,
        pairs,
    })
}

/// A message's pairs, values unescaped.
type Pairs = Vec<(String, Vec<u8>)>;

/// Words, then pairs.
fn parse_message(m: &[u8]) -> Result<(Vec<String>, Pairs), String> {
    let mut words = Vec::new();
    let mut pairs: Pairs = Vec::new();
    let mut i = 0;
    if m.is_empty() {
        return Err("empty message".into());
    }
    loop {
        // one token from i
        let start = i;
        while i < m.len() && m[i] != b' ' && m[i] != b'=' && m[i] != b'"' {
            i += 1;
        }
        let head = &m[start..i];
        if head.is_empty() {
            return Err(format!("an empty token or a stray byte at {start}"));
        }
        if i < m.len() && m[i] == b'=' {
            if !head.iter().all(|&b| key_byte(b)) || !head[0].is_ascii_alphabetic() {
                return Err(format!("key {:?}", String::from_utf8_lossy(head)));
            }
            let key = String::from_utf8_lossy(head).into_owned();
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(format!("key {key} twice"));
            }
            i += 1;
            let (value, next) = parse_value(m, i).map_err(|e| format!("{key}=: {e}"))?;
            pairs.push((key, value));
            i = next;
        } else {
            if i < m.len() && m[i] == b'"' {
                return Err(format!("a quote inside the word at {start}"));
            }
            if !pairs.is_empty() {
                return Err(format!(
                    "the word {:?} after a key=value pair",
                    String::from_utf8_lossy(head)
                ));
            }
            if !head.iter().all(|&b| bare(b)) {
                return Err(format!("word {:?}", String::from_utf8_lossy(head)));
            }
            words.push(String::from_utf8_lossy(head).into_owned());
        }
        if i == m.len() {
            break;
        }
        // exactly one space, and something after it
        if m[i] != b' ' {
            return Err(format!(
                "byte {:?} at {i} where a space should be",
                m[i] as char
            ));
        }
        i += 1;
        if i == m.len() || m[i] == b' ' {
            return Err(format!(
                "more than one space, or a space at the end, at {i}"
            ));
        }
    }
    if words.is_empty() {
        return Err("no free word before the pairs".into());
    }
    Ok((words, pairs))
}

/// A value from `i`: its bytes and where the token ends.
fn parse_value(m: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), String> {
    if i == m.len() || m[i] == b' ' {
        return Err("empty bare value (an empty value is \"\")".into());
    }
    if m[i] != b'"' {
        let start = i;
        while i < m.len() && m[i] != b' ' {
            if !bare(m[i]) {
                return Err(format!("byte {:?} in a bare value", m[i] as char));
            }
            i += 1;
        }
        return Ok((m[start..i].to_vec(), i));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        let Some(&b) = m.get(i) else {
            return Err("no closing quote".into());
        };
        i += 1;
        match b {
            b'"' => break,
            b'\\' => {
                let Some(&e) = m.get(i) else {
                    return Err("a backslash at the end".into());
                };
                i += 1;
                match e {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let hex = m.get(i..i + 4).ok_or("a short \\u escape")?;
                        let hex = std::str::from_utf8(hex).map_err(|_| "\\u escape")?;
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !hex.starts_with("00") {
                            return Err(format!("escape \\u{hex}"));
                        }
                        out.push(u8::from_str_radix(&hex[2..], 16).map_err(|e| e.to_string())?);
                        i += 4;
                    }
                    other => return Err(format!("unknown escape \\{}", other as char)),
                }
            }
            _ => out.push(b),
        }
    }
    if i < m.len() && m[i] != b' ' {
        return Err(format!(
            "byte {:?} right after a closing quote",
            m[i] as char
        ));
    }
    Ok((out, i))
}

/// Every line of `log` (as written: `\n`-separated), parsed; the first that does not parse
/// is an error naming its number and the line.
pub fn parse_all(log: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for (n, line) in log.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match parse(line) {
            Ok(r) => out.push(r),
            Err(e) => {
                return Err(format!(
                    "log line {} is not logfmt: {e}\n{}",
                    n + 1,
                    String::from_utf8_lossy(line)
                ))
            }
        }
    }
    Ok(out)
}
