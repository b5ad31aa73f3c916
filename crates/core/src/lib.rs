//! Quotabell's headless engine: the token in the OS keychain, one resumable SSE connection
//! plus catch-up over HTTP, a SQLite cache, and exactly-once limit notifications.
//! No Tauri here: everything builds and is tested without a display.

pub mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod companion;
pub mod dashboard;
pub mod doctor;
pub mod engine;
pub mod forecast;
pub mod foresight;
pub mod ipc;
pub mod lock;
pub mod notifier;
mod page;
pub mod paths;
pub mod policy;
pub mod protocol;
pub mod secret;
pub mod server_url;
pub mod session;
pub mod sse_guard;
pub mod store;
#[cfg(test)]
mod strategies;
pub mod stream;
pub mod wake;
