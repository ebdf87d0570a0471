//! A program's config with every default applied: what `[program.NAME]` holding only
//! `command = "true"` reads as. The upgrade in place rebuilds a running program's config from
//! the state on top of it (a key the state does not carry, say one a newer supergo added,
//! takes its default), and the pre-flight of an upgrade runs the new binary as a process
//! of such a config.
//!
//! Read through `program::read` itself, not written out here, so that the defaults are the
//! loader's by construction and a key added to the loader needs nothing here.

use std::path::Path;

use super::section::Section;
use super::source::SourceFile;
use super::{program, ProgramConfig};

/// The defaults of a program named `name` whose `directory` is `directory`. `name` must be
/// a valid program name (letters, digits, `_`, `.`, `-`; not `all`).
pub fn program_defaults(name: &str, directory: &Path) -> Result<ProgramConfig, String> {
    let path = Path::new("(defaults)");
    let file = SourceFile::parse(
        path,
        &directory.join("(defaults)"),
        "command = \"true\"\n".into(),
    )
    .map_err(|e| e.to_string())?;
    let section = Section::new(&file, format!("program `{name}`"), &file.root, Some(1));
    program::read(&section, name, directory).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_default_applies_and_the_directory_is_the_one_given() {
        let config = program_defaults("web", Path::new("/tmp")).expect("defaults");
        assert_eq!(config.name, "web");
        assert_eq!(config.argv, ["true"]);
        assert_eq!(config.directory, Path::new("/tmp"));
        assert_eq!(config.stop_timeout, Duration::from_secs(10));
        assert_eq!(config.max_retry, 3);
        assert!(config.autostart && config.stop_as_group);
        assert!(program_defaults("all", Path::new("/tmp")).is_err());
    }
}
