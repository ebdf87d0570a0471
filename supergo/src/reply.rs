//! The answer to a control request: the envelope of DESIGN.md, `{"status", "message",
//! "data"}`, with the HTTP status that matches.
//!
//! A big answer (`GET /status`) comes already rendered (`Reply::json`), written into a
//! buffer that is reused from one answer to the next (`buffer`, `recycle`): with 1000
//! programs it is ~0.5 MB, and a fresh one per request would cost page faults each time
//! and leave freed heap behind.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// The envelope of every JSON answer, serialized field by field (no copy of `data`).
#[derive(Serialize)]
pub struct Envelope<'a, D: Serialize> {
    pub status: u16,
    pub message: &'a str,
    pub data: D,
}

#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status: 200 on success; 400, 404, 405, 409, 500 on failure.
    pub http: u16,
    pub message: String,
    pub data: Value,
    /// A body sent as is (text/plain) instead of the JSON envelope (`/metrics`).
    pub raw: Option<String>,
    /// The whole JSON body, envelope included, rendered already (`GET /status`).
    pub json: Option<Vec<u8>>,
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
            json: None,
            taken: false,
        }
    }

    pub fn error(http: u16, message: impl Into<String>) -> Reply {
        Reply {
            http,
            message: message.into(),
            data: Value::Null,
            raw: None,
            json: None,
            taken: false,
        }
    }

    pub fn text(body: String) -> Reply {
        Reply {
            http: 200,
            message: String::new(),
            data: Value::Null,
            raw: Some(body),
            json: None,
            taken: false,
        }
    }

    /// A JSON body rendered already, envelope included (see `buffer`).
    pub fn json(body: Vec<u8>) -> Reply {
        Reply {
            json: Some(body),
            ..Reply::ok(String::new(), Value::Null)
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
    pub fn body(&self) -> Vec<u8> {
        if let Some(json) = &self.json {
            return json.clone();
        }
        let mut body = Vec::new();
        self.write_body(&mut body);
        body
    }

    /// Appends the JSON body (`body`) to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        if let Some(json) = &self.json {
            return out.extend_from_slice(json);
        }
        let envelope = Envelope {
            status: if self.is_ok() { 0 } else { self.http },
            message: &self.message,
            data: &self.data,
        };
        // A `Value` always serializes (its map keys are strings).
        serde_json::to_writer(out, &envelope).expect("a JSON value always serializes");
    }

    /// Gives a rendered body's buffer back for the next big answer (see `buffer`).
    pub fn recycle(self) {
        if let Some(json) = self.json {
            recycle(json);
        }
    }
}

/// The buffer kept between big answers (see the module docs); one is enough, since status
/// answers are built one at a time by the core.
static SPARE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// An empty buffer for a big answer: the one kept from the last, with its capacity.
pub fn buffer() -> Vec<u8> {
    let mut buffer = std::mem::take(&mut *SPARE.lock().unwrap_or_else(|p| p.into_inner()));
    buffer.clear();
    buffer
}

/// Keeps `buffer` for the next big answer (the larger one, when two answers overlapped).
pub fn recycle(buffer: Vec<u8>) {
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    if buffer.capacity() > spare.capacity() {
        *spare = buffer;
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
