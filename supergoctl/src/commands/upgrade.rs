//! `upgrade [--binary PATH]`: ask supergo to re-execute itself in place from a new binary
//! (`POST /upgrade`, the path in `?binary=`), and print the answer, which comes from the
//! new image once it serves: `upgraded: supergo 0.1.0 -> 0.2.0 (pid 4242 kept), …`.
//!
//! A relative `--binary` is made absolute here, against supergoctl's working directory:
//! that is the directory the operator typed it in, while supergo's own may be anything.

use std::os::unix::ffi::OsStrExt;
use std::path::{self, Path};

use crate::client::{encode, snippet, Answer, Method, LONG_TIMEOUT};
use crate::error::CtlError;
use crate::wording::is_generic;

use super::ctx::Ctx;

impl Ctx<'_> {
    pub(super) fn upgrade(&mut self, binary: Option<&str>) -> Result<(), CtlError> {
        let path = match binary {
            None => "/upgrade".to_string(),
            Some(binary) => {
                let absolute = path::absolute(Path::new(binary)).map_err(|err| {
                    CtlError::usage(format!("--binary {binary}: cannot make it absolute: {err}"))
                })?;
                format!(
                    "/upgrade?binary={}",
                    encode(absolute.as_os_str().as_bytes())
                )
            }
        };
        // The new binary is checked (it loads the config) before supergo execs it, and the
        // new image answers only once it serves: this may take as long as a restart.
        let (http, raw) = self.client.send(Method::Post, &path, LONG_TIMEOUT)?;
        let answer: Answer = match Answer::parse(http, raw) {
            Ok(answer) => answer,
            Err(raw) => {
                // The original supergo answers unknown routes with a plain-text 404.
                if http == 404 || http == 405 {
                    return Err(cannot_upgrade(http, &snippet(&raw)));
                }
                return Err(self.client.not_supergo(Method::Post, &path, http, &raw));
            }
        };
        if self.json {
            self.raw(&answer.raw)?;
        }
        if answer.ok() {
            let message = if is_generic(&answer.message) {
                "upgraded".to_string()
            } else {
                answer.reason()
            };
            return self.say(&message);
        }
        let reason = answer.reason();
        // A supergo from before upgrade in place has no such route.
        if answer.http == 404 && reason.starts_with("no route") {
            return Err(cannot_upgrade(answer.http, &reason));
        }
        Err(CtlError::Daemon(format!("upgrade failed: {reason}")))
    }
}

fn cannot_upgrade(http: i32, said: &str) -> CtlError {
    CtlError::Daemon(format!(
        "upgrade failed: this supergo cannot upgrade in place \
         (POST /upgrade answered HTTP {http}: {said})"
    ))
}
