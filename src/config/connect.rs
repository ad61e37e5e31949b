//! What CONNECT mode sends besides its request line, as the keys give it: the header names
//! (ENVOY_REGION_KEY, ENVOY_SESSION_KEY) and the extra headers (ENVOY_HEADERS), each held
//! to the rule the CONNECT emitter enforces. Values only.

use crate::wire::http::{is_sendable_field_byte, is_tchar};

/// One extra header sent on CONNECT (`ENVOY_HEADERS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectHeader {
    /// A token, as in RFC 9110 §5.1.
    pub name: String,
    /// Visible ASCII, spaces and tabs; never CR, LF or NUL.
    pub value: String,
}

/// An HTTP header name (the same token rule the CONNECT emitter enforces).
pub fn token(v: &str) -> Option<String> {
    let ok = !v.is_empty() && v.bytes().all(is_tchar);
    ok.then(|| v.to_string())
}

/// ENVOY_HEADERS: `Name: value` pairs separated by `;`, each as the CONNECT emitter will
/// accept it (a token name; a value of visible ASCII, spaces and tabs); else why not.
pub fn headers(text: &str) -> Result<Vec<ConnectHeader>, String> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, val)) = part.split_once(':') else {
            return Err(format!("{part:?} is not 'Name: value'"));
        };
        let (name, val) = (name.trim(), val.trim());
        if token(name).is_none() {
            return Err(format!("{name:?} is not an HTTP header name"));
        }
        if !val.bytes().all(is_sendable_field_byte) {
            return Err(format!(
                "the value of {name} holds a control or non-ASCII byte"
            ));
        }
        out.push(ConnectHeader {
            name: name.to_string(),
            value: val.to_string(),
        });
    }
    Ok(out)
}
