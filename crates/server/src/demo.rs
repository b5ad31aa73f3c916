//! Demo mode: a demo user on the Free plan and a simulated build plugin, so that a fresh
//! machine sees quota crossings within two minutes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::account;
use crate::auth;
use crate::error::StoreError;
use crate::live::follow;
use crate::store::{Sql, params};

pub const DEMO_EMAIL: &str = "demo@quotabell.local";
const DEMO_APPS: [&str; 4] = ["storefront", "checkout", "design-system", "search"];

/// Makes sure the demo user exists with a fresh token and a fresh billing period (so every
/// demo run crosses its thresholds again). Returns the token; only its hash is stored.
///
/// Runs in the caller's transaction; also returns the wake-up for the events it wrote.
pub fn prepare_user(sql: &mut dyn Sql, now: i64) -> Result<(String, Vec<(i64, u64)>), StoreError> {
    let token = auth::generate();
    let user = match account::id_by_email(sql, DEMO_EMAIL) {
        Ok(id) => {
            account::set_token_hash(sql, id, &auth::hash(&token))?;
            id
        }
        Err(StoreError::NoSuchUser(_)) => {
            account::create(sql, DEMO_EMAIL, "free", &auth::hash(&token), now)?
        }
        Err(e) => return Err(e),
    };
    account::lock(sql, &[user])?;
    let mut events = account::set_plan(sql, user, "free", now)?;
    sql.execute("DELETE FROM apps WHERE user_id = $1", params![user])?;
    sql.execute("DELETE FROM crossings WHERE user_id = $1", params![user])?;
    events.extend(account::roll_period(sql, user, now)?);
    Ok((token, follow::newest(&events)))
}

/// Writes the token to `path`, readable by the owner only. The file is created with mode 0600
/// before any byte is written, and replaced atomically.
pub fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The simulated build plugin: posts a build every `interval` until the process stops.
pub async fn run_plugin(addr: SocketAddr, token: String, interval: Duration) {
    // Built in one workspace with quotabell-core, reqwest carries core's TLS setup (rustls
    // without a default provider), and building a client then needs a provider installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/builds");
    let mut tick = tokio::time::interval(interval);
    for n in 0u64.. {
        tick.tick().await;
        let app = DEMO_APPS[(n as usize / 7) % DEMO_APPS.len()];
        let body = serde_json::json!({
            "app": app,
            "version": format!("1.{}.{}", n / 10, n % 10),
            "commit": hex::encode(rand::random::<[u8; 20]>()),
        });
        match client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        {
            Ok(res) => tracing::debug!(status = %res.status(), app, "demo build posted"),
            Err(e) => tracing::warn!(error = %e, "demo build post failed"),
        }
    }
}
