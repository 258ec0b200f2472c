//! Strings a guest hands the host — log lines, error and panic messages, its
//! name and version — are untrusted: bounded in length and with control
//! characters escaped before they reach a log, a manifest or the API, so a
//! guest can neither flood the host's stderr nor forge its log lines
//! (newlines, ANSI escapes).

/// Longest message kept from a guest (log line, error, panic), in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// Longest name or version kept from a guest's descriptor, in bytes.
pub const MAX_NAME: usize = 128;

/// `text` with control characters escaped (`\n`, `\u{1b}`) and cut to at
/// most about `max` bytes, saying how much was cut.
pub fn untrusted(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for (at, c) in text.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… ({} more bytes cut)", text.len() - at));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 #6: no newline or escape survives, and length is bounded.
    #[test]
    fn control_characters_are_escaped_and_length_bounded() {
        assert_eq!(untrusted("ok: ü", 100), "ok: ü");
        assert_eq!(untrusted("a\nERROR forged\u{1b}[2J", 100), "a\\nERROR forged\\u{1b}[2J");
        let long = untrusted(&"x".repeat(1 << 20), 64);
        assert!(long.len() < 100 && long.ends_with("more bytes cut)"), "{long}");
        assert!(!untrusted(&"\n".repeat(10_000), 64).contains('\n'));
    }
}
