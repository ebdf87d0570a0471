//! One config file as read from disk: its name as the operator knows it, the directory its
//! relative paths start from, its text (to turn byte offsets into line numbers) and its
//! parsed tree.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use super::tree::{self, Table};
use super::ConfigError;

pub struct SourceFile {
    /// As named on the command line or found by `[include]`: what error messages show.
    pub path: PathBuf,
    /// Absolute directory of the file: relative paths inside it resolve against this.
    pub dir: PathBuf,
    text: String,
    /// Where each `\n` of `text` is: a line number is a binary search, not a count of every
    /// newline before it (done for each program, that was most of the time a 1000-program
    /// config took to load).
    newlines: Vec<usize>,
    pub root: Table,
}

impl SourceFile {
    /// Reads and parses `path` (a relative path is taken from `cwd`).
    pub fn read(path: &Path, cwd: &Path) -> Result<SourceFile, ConfigError> {
        let absolute = cwd.join(path);
        let text = std::fs::read_to_string(&absolute).map_err(|err| ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read config file: {err}"),
        })?;
        SourceFile::parse(path, &absolute, text)
    }

    pub(super) fn parse(
        path: &Path,
        absolute: &Path,
        text: String,
    ) -> Result<SourceFile, ConfigError> {
        let root = tree::parse(&text).map_err(|err| ConfigError {
            file: path.to_path_buf(),
            line: err.offset.map(|offset| tree::line_of(&text, offset)),
            message: format!("invalid TOML: {}", err.message),
        })?;
        // `absolute` names a file that was just read, so it has a parent.
        let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let newlines = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        Ok(SourceFile {
            path: path.to_path_buf(),
            dir,
            text,
            newlines,
            root,
        })
    }

    /// 1-based line of a byte offset into this file.
    pub fn line_of(&self, offset: Option<usize>) -> Option<usize> {
        // As `tree::line_of`: newlines before the offset, plus one.
        offset.map(|offset| self.newlines.partition_point(|&at| at < offset) + 1)
    }

    /// The source text of a byte range, e.g. how an integer was written (`0o660` or `660`).
    pub fn text_of(&self, span: &std::ops::Range<usize>) -> Option<&str> {
        self.text.get(span.clone())
    }

    pub fn error(&self, line: Option<usize>, message: impl Display) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line,
            message: message.to_string(),
        }
    }

    /// A path written in this file: a relative one is taken from the file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_the_newlines_before_the_offset() {
        let text = "a = 1\n\nb = 2\nc = 3".to_string();
        let file = SourceFile::parse(Path::new("t.toml"), Path::new("/t.toml"), text.clone())
            .expect("valid TOML");
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                file.line_of(Some(offset)),
                Some(tree::line_of(&text, offset)),
                "offset {offset}"
            );
        }
        assert_eq!(file.line_of(None), None);
    }
}
