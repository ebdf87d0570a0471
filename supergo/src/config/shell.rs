//! Splitting a `command` string into words the way a POSIX shell does, and nothing more.
//!
//! supergo never runs a shell for `command`: the words go straight to `execve`. This module
//! follows the shell's quoting rules (POSIX "Token Recognition" and "Quoting") so that a
//! command written for a shell means the same here:
//! - unquoted blanks (space, tab, newline) separate words;
//! - `'…'` is literal, backslashes included;
//! - `"…"` is literal except that a backslash escapes `"`, `\`, `$` and `` ` `` (before any
//!   other character the backslash stays), and a backslash-newline disappears;
//! - an unquoted backslash makes the next character literal (backslash-newline disappears;
//!   a backslash at the very end stays, as in `sh -c 'echo a\'`);
//! - `''` and `""` make an empty word.
//!
//! Deliberately not done: expansion of `$VAR`, `~`, globs, `$(…)`, and operators such as `|`,
//! `&&`, `>`: they stay literal characters of a word. Whoever needs them writes
//! `sh -c '…'`.

/// Splits `command` into words. The only error is an unterminated quote; the message says
/// which kind.
pub fn split(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    // `None` between words; `Some` once a word has begun, even an empty quoted one.
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => single_quoted(&mut chars, word.get_or_insert_with(String::new))?,
            '"' => double_quoted(&mut chars, word.get_or_insert_with(String::new))?,
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => word.get_or_insert_with(String::new).push(next),
                // Nothing left to escape: the shell keeps the backslash itself.
                None => word.get_or_insert_with(String::new).push('\\'),
            },
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    Ok(words)
}

fn single_quoted(chars: &mut std::str::Chars<'_>, word: &mut String) -> Result<(), String> {
    for c in chars.by_ref() {
        if c == '\'' {
            return Ok(());
        }
        word.push(c);
    }
    Err("unterminated single quote".into())
}

fn double_quoted(chars: &mut std::str::Chars<'_>, word: &mut String) -> Result<(), String> {
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(()),
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                Some('\n') => {}
                // Before any other character the shell keeps the backslash.
                Some(other) => {
                    word.push('\\');
                    word.push(other);
                }
                None => break,
            },
            other => word.push(other),
        }
    }
    Err("unterminated double quote".into())
}

#[cfg(test)]
mod tests {
    use super::split;

    fn words(command: &str) -> Vec<String> {
        split(command).unwrap_or_else(|err| panic!("{command:?}: {err}"))
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(words("sleep 1000"), ["sleep", "1000"]);
        assert_eq!(
            words("  ./http_listener   -arg=test\tworld\n"),
            ["./http_listener", "-arg=test", "world"]
        );
        assert!(words("").is_empty());
        assert!(words(" \t ").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            words("sh -c 'sleep 1 && echo hi'"),
            ["sh", "-c", "sleep 1 && echo hi"]
        );
        assert_eq!(words(r#"echo 'a\b \" $x'"#), ["echo", r#"a\b \" $x"#]);
    }

    #[test]
    fn double_quotes_escape_only_four_characters() {
        assert_eq!(
            words(r#"echo "a \"b\" \\ \$HOME \` \n""#),
            ["echo", r#"a "b" \ $HOME ` \n"#]
        );
        assert_eq!(words("echo \"one\\\ntwo\""), ["echo", "onetwo"]);
    }

    #[test]
    fn backslash_outside_quotes_escapes_next_char() {
        assert_eq!(words(r"echo a\ b \'c\' \\"), ["echo", "a b", "'c'", "\\"]);
        assert_eq!(words("echo a\\\nb"), ["echo", "ab"]);
        assert_eq!(words(r"echo abc\"), ["echo", r"abc\"]);
    }

    #[test]
    fn quotes_join_with_adjacent_text_and_can_be_empty() {
        assert_eq!(
            words(r#"--name="my app"x 'a'"b"c"#),
            ["--name=my appx", "abc"]
        );
        assert_eq!(words(r#"printf '' "" x"#), ["printf", "", "", "x"]);
    }

    #[test]
    fn no_expansion_and_no_operators() {
        assert_eq!(
            words("echo $HOME ~ *.rs a|b >out"),
            ["echo", "$HOME", "~", "*.rs", "a|b", ">out"]
        );
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert_eq!(
            split(r#"echo "abc"#).unwrap_err(),
            "unterminated double quote"
        );
        assert_eq!(
            split(r#"echo "abc\""#).unwrap_err(),
            "unterminated double quote"
        );
        assert_eq!(split("echo 'abc").unwrap_err(), "unterminated single quote");
    }
}
