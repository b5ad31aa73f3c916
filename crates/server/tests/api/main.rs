//! End-to-end tests of the reference backend: each test runs the real `quotabell-server`
//! binary on an ephemeral port with its own SQLite file.

mod support;

mod crash;
mod demo;
mod idempotency;
mod input;
mod quota;
mod stream;
