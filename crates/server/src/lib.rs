//! Quotabell's reference backend: quota-checked builds, a transactional event outbox and
//! per-user Server-Sent Events, as specified in docs/protocol.md.
//!
//! Two halves. The domain (accounts and plans, metrics and their thresholds, the quota check,
//! the event log, billing periods, the single writer and the database) decides what happened
//! and commits it with its events. Live delivery (`live`) carries committed events to open streams. `api` is the HTTP
//! surface over both, and `app` wires them together.

pub mod account;
pub mod api;
pub mod app;
pub mod auth;
pub mod demo;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod live;
pub mod metric;
pub mod paths;
pub mod period;
pub mod quota;
pub mod store;
pub mod threshold;
pub mod wire;
pub mod writer;
