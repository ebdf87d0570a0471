//! The answer to a control request: the envelope of DESIGN.md, `{"status", "message",
//! "data"}`, with the HTTP status that matches.

use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status: 200 on success; 400, 404, 405, 409, 500 on failure.
    pub http: u16,
    pub message: String,
    pub data: Value,
    /// A body sent as is (text/plain) instead of the JSON envelope (`/metrics`).
    pub raw: Option<String>,
    /// The handler took the connection to answer it from elsewhere (an upgrade in place:
    /// the new image answers): the server closes its copy without writing anything.
    pub taken: bool,
}

impl Reply {
    pub fn ok(message: impl Into<String>, data: Value) -> Reply {
        Reply {
            http: 200,
            message: message.into(),
            data,
            raw: None,
            taken: false,
        }
    }

    pub fn error(http: u16, message: impl Into<String>) -> Reply {
        Reply {
            http,
            message: message.into(),
            data: Value::Null,
            raw: None,
            taken: false,
        }
    }

    pub fn text(body: String) -> Reply {
        Reply {
            http: 200,
            message: String::new(),
            data: Value::Null,
            raw: Some(body),
            taken: false,
        }
    }

    /// The connection was taken by the handler (see `taken`).
    pub fn taken() -> Reply {
        Reply {
            taken: true,
            ..Reply::error(202, "answered by the new image")
        }
    }

    pub fn with_data(mut self, data: Value) -> Reply {
        self.data = data;
        self
    }

    pub fn is_ok(&self) -> bool {
        self.http < 300
    }

    /// The JSON body. `status` is 0 on success and the HTTP status otherwise, so that the
    /// original supergo's clients (which test `status != 0`) keep working.
    pub fn body(&self) -> String {
        let status = if self.is_ok() { 0 } else { self.http };
        json!({ "status": status, "message": self.message, "data": self.data }).to_string()
    }
}

/// Where a worker sends the outcome of a request that must wait (start, stop, restart).
pub type Replier = crossbeam_channel::Sender<Reply>;

/// Sends a reply to someone who may have stopped waiting (a client that hung up).
pub fn send(replier: Option<Replier>, reply: Reply) {
    if let Some(r) = replier {
        let _ = r.send(reply);
    }
}
