//! End-to-end: the real backend (on a SQLite file, or several instances on one PostgreSQL
//! database), the real `quotabell` engine binary, and a private desktop session with a real
//! Secret Service and notification daemon.

mod support;

mod accounts;
mod app_launch;
mod cluster;
mod companion;
mod conformance;
mod desktop_app;
mod doctor;
mod engine;
mod faults;
mod foresight;
mod loopback;
mod migration;
mod proxy;
mod scripted;
mod soak;
mod tray;
mod webdriver;
mod why;
