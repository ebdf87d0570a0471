//! Escaping of values and section names in the state format, so that any byte string
//! round-trips through one line of text.
//!
//! The escaped form holds no control character (so no newline) and is valid UTF-8:
//! `\\` is a backslash, `\n`, `\t` and `\r` the usual characters, and `\xHH` any other byte
//! that is a control character (C0, DEL, C1) or not part of valid UTF-8 (a non-UTF-8 path).
//! Every other character stands for itself, leading and trailing blanks included. systemd's
//! serialize.c uses C escapes the same way (`cescape`/`cunescape`).
//!
//! Kinds and keys are never escaped: `is_name` is the one rule both the writer and the
//! reader hold them to.

use std::fmt::Write;

/// Kinds and keys are names chosen in code: lowercase letters, digits, `_` and `-`.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `bytes` as one line of text; `unescape` gives them back exactly.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        push_hex(&mut out, byte);
                    }
                }
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_hex(&mut out, byte);
        }
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{byte:02x}");
}

/// The bytes `escape` made `text` from. The error says what is wrong, for a message that
/// names the line.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c.is_control() {
            return Err(format!(
                "raw control character {:#04x} at column {}: the writer escapes every one",
                u32::from(c),
                at + 1
            ));
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next().map(|(_, c)| c) {
            Some('\\') => out.push(b'\\'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!(
                            "bad escape `\\x{hex}` at column {}: expected two hex digits",
                            at + 1
                        )
                    })?;
                out.push(byte);
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape `\\{other}` at column {} (known: \\\\ \\n \\t \\r \\xHH)",
                    at + 1
                ))
            }
            None => return Err("a lone `\\` ends the line".to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: &[u8]) {
        let escaped = escape(bytes);
        assert!(
            !escaped.chars().any(char::is_control),
            "escaped form of {bytes:?} holds a control character: {escaped:?}"
        );
        assert_eq!(unescape(&escaped).as_deref(), Ok(bytes), "via {escaped:?}");
    }

    #[test]
    fn every_byte_and_awkward_strings_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all);
        for text in [
            "",
            " leading and trailing ",
            "a=b=c",
            "[not a section]",
            "back\\slash \\n not a newline",
            "line\nbreak\r\n\ttab",
            "ünïcödé ✓ 漢字 \u{85} \u{2028}",
            "#not a comment",
        ] {
            round_trip(text.as_bytes());
        }
        round_trip(b"/tmp/not-utf8-\xff\xfe/x");
    }

    #[test]
    fn printable_text_stays_readable() {
        assert_eq!(escape(b"127.0.0.1:4041"), "127.0.0.1:4041");
        assert_eq!(escape(b"a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(escape(b"\x01\xff"), "\\x01\\xff");
    }

    #[test]
    fn bad_escapes_are_named() {
        assert!(unescape("x\\q")
            .unwrap_err()
            .contains("unknown escape `\\q`"));
        assert!(unescape("x\\x4").unwrap_err().contains("two hex digits"));
        assert!(unescape("x\\xzz").unwrap_err().contains("`\\xzz`"));
        assert!(unescape("x\\").unwrap_err().contains("lone"));
        assert!(unescape("a\rb")
            .unwrap_err()
            .contains("raw control character 0x0d"));
    }
}
