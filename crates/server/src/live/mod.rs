//! Live delivery: how committed events reach open `GET /api/v1/stream` connections.
//!
//! The domain half (accounts, quotas, events, the writer) commits events and hands each
//! committed batch to `hub::Hubs::publish`; everything after that is here:
//!
//! - `serve`: the accept loop; a connection whose first bytes are a stream request goes to
//!   `stream_conn`, any other to hyper. Both run the same axum router.
//! - `stream_conn`: a stream connection served without hyper (small buffers, one vectored write
//!   a chunk).
//! - `stream`: the SSE handler, which reads after the client's own cursor, from the hub's tail
//!   or the database.
//! - `hub`: per user, a short tail of pre-framed SSE bytes, a watch of the newest id, and the
//!   fan-out task.
//! - `direct`: an idle stream's socket lent to its hub (`Sink`), so the fan-out writes a commit
//!   to every parked stream in one pass.
//! - `follow`: commits made elsewhere (operator commands, background jobs, other instances on
//!   PostgreSQL) reach the hubs too: a wake-up names the users, the log is re-read.
//!
//! Nothing here is a source of truth: a stream can always fall back to paging the event log.

pub mod direct;
pub mod follow;
pub mod hub;
pub(crate) mod serve;
pub(crate) mod stream;
mod stream_conn;
