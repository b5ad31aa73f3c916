//! A page of events as it reaches the engine, whichever way it came: a catch-up or backstop
//! page of `/events`, a long poll's answer, or a burst of the stream. The engine applies every
//! one in the same step (`Engine::apply`): either its events are stored, or it says history
//! after the cursor is gone and the engine resyncs.

use std::fmt;

use crate::client::ApiError;
use crate::protocol::EventsPage;
use crate::store::Incoming;

pub enum Page {
    /// Events the server sent in `epoch`, oldest first.
    Events {
        epoch: String,
        events: Vec<Incoming>,
    },
    /// The server says the history after the cursor is gone.
    Gone(Gap),
}

/// Why the history after the cursor cannot be read: the cursor restarts from `/usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// The server's `Stream-Epoch` differs from the one stored with the cursor: its ids mean
    /// other events now.
    EpochChanged,
    /// `410 history_expired`, with the server's reason.
    HistoryExpired(String),
    /// `sync.reset` on the stream, with its data.
    Reset(String),
}

/// What became of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Its events are stored (those already stored skipped); `builds` new `build.accepted`.
    Stored { builds: u64 },
    /// It showed a gap, and the engine resynced.
    Gap,
}

impl Page {
    /// `/events` as answered: `410 history_expired` is a gap, any other error stays one.
    pub fn fetched(answer: Result<EventsPage, ApiError>) -> Result<Self, ApiError> {
        match answer {
            Ok(page) => Ok(page.into()),
            Err(ApiError::HistoryExpired { reason }) => Ok(Self::Gone(Gap::HistoryExpired(reason))),
            Err(e) => Err(e),
        }
    }
}

impl From<EventsPage> for Page {
    fn from(page: EventsPage) -> Self {
        Self::Events {
            epoch: page.stream_epoch,
            events: page.events.into_iter().map(Incoming::from).collect(),
        }
    }
}

/// As the history gap is recorded (`history_gaps.detail`).
impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EpochChanged => f.write_str("stream epoch changed"),
            Self::HistoryExpired(reason) => write!(f, "history_expired ({reason})"),
            Self::Reset(data) => write!(f, "sync.reset {data}"),
        }
    }
}
