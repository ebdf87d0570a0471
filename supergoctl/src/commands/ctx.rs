//! The state one command run shares across its requests: the client, `--json`, where
//! results and failures go, and whether a failure was already printed.

use std::io::Write;

use serde::de::DeserializeOwned;

use crate::args::Cli;
use crate::client::{Answer, Client, Method, LONG_TIMEOUT, SHORT_TIMEOUT};
use crate::error::CtlError;

/// One run of one command; each command group adds its methods in its own file.
pub struct Ctx<'a> {
    pub(super) client: Client,
    pub(super) json: bool,
    pub(super) out: &'a mut dyn Write,
    pub(super) err: &'a mut dyn Write,
    /// A failure was already printed to `err`.
    pub(super) failed: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(cli: &Cli, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Ctx<'a> {
        Ctx {
            client: Client::new(cli.endpoint.clone(), cli.token.clone()),
            json: cli.json,
            out,
            err,
            failed: false,
        }
    }
}

impl Ctx<'_> {
    /// One request; with `--json` its body is printed right away.
    pub(super) fn request<T: DeserializeOwned + Default>(
        &mut self,
        method: Method,
        path: &str,
        long: bool,
    ) -> Result<Answer<T>, CtlError> {
        let timeout = if long { LONG_TIMEOUT } else { SHORT_TIMEOUT };
        let answer = self.client.call(method, path, timeout)?;
        if self.json {
            self.raw(&answer.raw)?;
        }
        Ok(answer)
    }

    pub(super) fn raw(&mut self, body: &str) -> Result<(), CtlError> {
        writeln!(self.out, "{}", body.trim_end())?;
        self.out.flush()?;
        Ok(())
    }

    /// A human result line (nothing with `--json`).
    pub(super) fn say(&mut self, line: &str) -> Result<(), CtlError> {
        if !self.json {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// A failure line on stderr; the command will end with exit status 1.
    pub(super) fn fail(&mut self, line: &str) -> Result<(), CtlError> {
        self.failed = true;
        writeln!(self.err, "supergoctl: {line}")?;
        Ok(())
    }

    /// The result of a command that may have printed failures along the way.
    pub(super) fn finish(&self) -> Result<(), CtlError> {
        if self.failed {
            Err(CtlError::Reported)
        } else {
            Ok(())
        }
    }

    /// Program output as it came (nothing with `--json`).
    pub(super) fn write_text(&mut self, text: &str) -> Result<(), CtlError> {
        if !self.json && !text.is_empty() {
            self.out.write_all(text.as_bytes())?;
            self.out.flush()?;
        }
        Ok(())
    }
}
