//! Signing in and out, and opening the engine of the signed-in account.

use std::sync::Arc;

use crate::client::{ApiClient, ApiError};
use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::lock::{EngineLock, LockError};
use crate::notifier::Notifier;
use crate::paths::Paths;
use crate::secret::{Keychain, SecretError, Token};
use crate::server_url::{ServerUrl, UrlError};
use crate::store::{AccountRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("sign-in failed: {0}")]
    Api(#[from] ApiError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("not signed in: run `quotabell login --server URL` first")]
    NotSignedIn,
    #[error("the token of {0} is missing from the keychain: sign in again")]
    TokenMissing(String),
}

/// Validates the token against the server, files it in the keychain and records the account.
/// Nothing is left behind when any step fails.
pub async fn login(
    paths: &Paths,
    server: &str,
    token: Token,
    keychain: Arc<dyn Keychain>,
    now: i64,
) -> Result<AccountRow, SessionError> {
    let url = ServerUrl::parse(server)?;
    let api = ApiClient::new(url.clone(), token.clone())?;
    let account = api.account().await?;
    // Where the log stands at sign-in: what came before is history (stored for review, not
    // announced); everything after is news, however late the engine first syncs.
    let signed_in_at = api.usage().await?.last_event_id;
    let key = format!("{}#{}", url.origin(), account.id);
    {
        let (kc, key, token) = (keychain.clone(), key.clone(), token.clone());
        blocking(move || kc.set(&key, &token)).await?;
    }
    let stored = (|| {
        let mut store = Store::open(&paths.db())?;
        let id = store.upsert_account(url.as_str(), &url.origin(), &account, now)?;
        store.mark_sign_in(id, &signed_in_at)?;
        Ok::<_, StoreError>(store.active_account()?.filter(|a| a.id == id))
    })();
    match stored {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Ok(AccountRow {
            id: 0,
            origin: url.origin(),
            server_url: url.as_str().to_owned(),
            user_id: account.id,
            email: account.email,
            plan: account.plan,
        }),
        Err(e) => {
            let _ = blocking(move || keychain.delete(&key)).await;
            Err(e.into())
        }
    }
}

/// Deletes the token from the keychain and the account's cache.
pub async fn logout(
    paths: &Paths,
    keychain: Arc<dyn Keychain>,
) -> Result<Option<AccountRow>, SessionError> {
    if !paths.db().exists() {
        return Ok(None);
    }
    // Not while an engine runs for this profile: it would write to a deleted account.
    let _lock = EngineLock::acquire(&paths.lock(), "quotabell logout")?;
    let mut store = Store::open(&paths.db())?;
    let Some(account) = store.active_account()? else {
        return Ok(None);
    };
    let key = account.keychain_key();
    blocking(move || keychain.delete(&key)).await?;
    store.delete_account(account.id)?;
    Ok(Some(account))
}

/// Everything a running engine holds: the engine and the profile lock.
pub struct Running {
    pub engine: Engine,
    pub lock: EngineLock,
}

/// Takes the profile lock and builds the engine of the signed-in account.
pub async fn open_engine(
    paths: &Paths,
    who: &str,
    keychain: Arc<dyn Keychain>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    cfg: EngineConfig,
) -> Result<Running, SessionError> {
    std::fs::create_dir_all(&paths.data).map_err(|source| StoreError::CreateDir {
        path: paths.data.clone(),
        source,
    })?;
    let lock = EngineLock::acquire(&paths.lock(), who)?;
    let store = Store::open(&paths.db())?;
    let account = store.active_account()?.ok_or(SessionError::NotSignedIn)?;
    let key = account.keychain_key();
    let token = blocking(move || keychain.get(&key))
        .await?
        .ok_or_else(|| SessionError::TokenMissing(account.email.clone()))?;
    let url = ServerUrl::parse(&account.server_url)?;
    let api = ApiClient::new(url, token)?;
    let engine = Engine::new(store, account, api, notifier, clock, cfg);
    Ok(Running { engine, lock })
}

/// Keychain calls block on D-Bus: keep them off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SecretError> + Send + 'static,
) -> Result<T, SecretError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(SecretError::Backend(format!("keychain task failed: {e}"))))
}
