//! Loading a config from TOML (to be written).
use super::{Config, ConfigError};
use std::path::Path;

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Err(ConfigError { file: path.to_path_buf(), line: None, message: "not implemented".into() })
}
