//! End-to-end: the real backend, the real `quotabell` engine binary, a real SQLite file, and a
//! private desktop session with a real Secret Service and notification daemon.

mod support;

mod app_launch;
mod cluster;
mod companion;
mod conformance;
mod desktop_app;
mod engine;
mod faults;
mod loopback;
mod proxy;
mod scripted;
mod soak;
mod tray;
mod webdriver;
