//! Quotabell's reference backend: quota-checked builds, a transactional event outbox and
//! per-user Server-Sent Events, as specified in docs/protocol.md.

pub mod account;
pub mod api;
pub mod app;
pub mod auth;
pub mod db;
pub mod demo;
pub mod direct;
pub mod error;
pub mod events;
pub mod hub;
pub mod paths;
pub mod period;
pub mod quota;
mod serve;
mod stream_conn;
pub mod writer;
