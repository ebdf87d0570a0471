//! "Did you mean …?" for unknown keys and sections: the known name closest to a typo.

/// Largest edit distance still taken for a typo. Two covers a dropped plus a swapped letter
/// (`stop_timout`, `autorestart` → `auto_restart`); more starts suggesting unrelated keys.
const MAX_DISTANCE: usize = 2;

/// The candidate nearest to `unknown`, if it is close enough to be a typo of it. Case is
/// ignored, so `Command` finds `command`.
pub fn closest<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_ascii_lowercase();
    candidates
        .iter()
        .map(|&candidate| (distance(&unknown, candidate), candidate))
        // A distance as long as the word itself means nothing in common (`ab` vs `cd`).
        .filter(|&(d, _)| d <= MAX_DISTANCE && d < unknown.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, candidate)| candidate)
}

/// " — did you mean `x`?" or nothing: ready to append to an error message.
pub fn did_you_mean(unknown: &str, candidates: &[&str]) -> String {
    match closest(unknown, candidates) {
        Some(candidate) => format!(" — did you mean `{candidate}`?"),
        None => String::new(),
    }
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the classic table: row[j] = distance(a[..i], b[..j]).
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("stop_timout", "stop_timeout"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abc", "abc"), 0);
    }

    #[test]
    fn suggests_only_close_names() {
        let keys = [
            "command",
            "stop_timeout",
            "start_secs",
            "auto_restart",
            "user",
        ];
        assert_eq!(closest("stop_timout", &keys), Some("stop_timeout"));
        assert_eq!(closest("autorestart", &keys), Some("auto_restart"));
        assert_eq!(closest("Command", &keys), Some("command"));
        assert_eq!(closest("usr", &keys), Some("user"));
        assert_eq!(closest("colour", &keys), None);
        assert_eq!(closest("ab", &["cd"]), None);
        assert_eq!(did_you_mean("comand", &keys), " — did you mean `command`?");
        assert_eq!(did_you_mean("xyz", &keys), "");
    }
}
