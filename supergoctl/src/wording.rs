//! How supergo's messages are worded for the operator: a line of our own for a
//! content-free message ("ok", "success"), the program's name in front unless the message
//! already names it, and no repeated `name:` or "restart failed" prefixes.
//!
//! Shared by the commands and the status table, and independent of both.

/// An empty or content-free message ("ok", the original supergo's "success"), for
/// which a line of our own says more.
pub fn is_generic(message: &str) -> bool {
    let m = message.trim();
    m.is_empty() || m.eq_ignore_ascii_case("ok") || m.eq_ignore_ascii_case("success")
}

/// `name: message`, unless the daemon's message already names the program
/// ("web: started, pid 12", "restart of web started").
pub fn about(name: &str, message: &str) -> String {
    if name.is_empty() || name == "all" || names_program(message, name) {
        message.to_string()
    } else {
        format!("{name}: {message}")
    }
}

/// Whether `name` occurs in `message` as a whole word (program names are made of
/// letters, digits, `_`, `.` and `-`; a sentence's final `.` is not part of one).
fn names_program(message: &str, name: &str) -> bool {
    message
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .any(|word| word == name || word.strip_suffix('.') == Some(name))
}

/// `message` without a leading `name:` (the daemon may or may not name the program).
pub fn strip_name<'m>(name: &str, message: &'m str) -> &'m str {
    match message.strip_prefix(name) {
        Some(rest) if rest.starts_with(':') => rest[1..].trim_start(),
        _ => message,
    }
}

pub fn strip_prefix_ci<'m>(text: &'m str, prefix: &str) -> &'m str {
    match text.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &text[prefix.len()..],
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_does_not_repeat_the_name() {
        assert_eq!(about("web", "started"), "web: started");
        assert_eq!(about("web", "web started"), "web started");
        assert_eq!(about("web", "web: not running"), "web: not running");
        assert_eq!(about("web", "webby is fine"), "web: webby is fine");
        assert_eq!(
            about("web", "restart of web started"),
            "restart of web started"
        );
        assert_eq!(about("a", "already running"), "a: already running");
        assert_eq!(about("web", "stopped web."), "stopped web.");
        assert_eq!(about("all", "started 3 programs"), "started 3 programs");
    }

    #[test]
    fn restart_reason_is_cleaned_of_repeats() {
        assert_eq!(strip_name("web", "web: boom"), "boom");
        assert_eq!(strip_name("web", "webby: boom"), "webby: boom");
        assert_eq!(
            strip_prefix_ci("Restart failed: x", "restart failed"),
            ": x"
        );
        assert_eq!(strip_prefix_ci("é", "restart failed"), "é");
    }
}
