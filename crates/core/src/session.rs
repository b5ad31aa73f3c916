//! Signing accounts in and out, choosing one, and opening the engine of each.

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
    #[error("no account is called {asked:?}; signed in: {}", .known.join(", "))]
    NoSuchAccount { asked: String, known: Vec<String> },
    #[error("several accounts are signed in: choose one with --account ({})", .0.join(", "))]
    ChooseAccount(Vec<String>),
}

/// Validates the token against the server, files it in the keychain and records the account
/// beside any others (signing in to a known account again replaces its token). Nothing is
/// left behind when any step fails.
pub async fn login(
    paths: &Paths,
    server: &str,
    token: Token,
    name: Option<&str>,
    keychain: Arc<dyn Keychain>,
    now: i64,
) -> Result<AccountRow, SessionError> {
    let url = ServerUrl::parse(server)?;
    let api = ApiClient::new(url.clone(), token.clone())?;
    let account = api.account().await?;
    // Where the log stands at sign-in: what came before is history (stored for review, not
    // announced); everything after is news, however late the engine first syncs.
    let signed_in_at = api.usage().await?.last_event_id;
    let key = AccountRow::keychain_key_of(&url.origin(), &account.id);
    // A name another account has is refused before anything is filed. Only an existing cache
    // is read: with no keychain, a failed sign-in must leave no file behind.
    if let Some(wanted) = name.filter(|_| paths.db().exists())
        && Store::open(&paths.db())?.name_taken(wanted, &url.origin(), &account.id)?
    {
        return Err(StoreError::NameTaken(wanted.to_owned()).into());
    }
    {
        let (kc, key, token) = (keychain.clone(), key.clone(), token.clone());
        blocking(move || kc.set(&key, &token)).await?;
    }
    let stored = (|| {
        let mut store = Store::open(&paths.db())?;
        let id = store.upsert_account(url.as_str(), &url.origin(), &account, name, now)?;
        store.mark_sign_in(id, &signed_in_at)?;
        store.account(id)
    })();
    match stored {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(SessionError::NotSignedIn),
        Err(e) => {
            let _ = blocking(move || keychain.delete(&key)).await;
            Err(e.into())
        }
    }
}

/// The account `selector` names (id, name or email), or the only one when none is named.
pub fn choose(store: &Store, selector: Option<&str>) -> Result<AccountRow, SessionError> {
    let names = || -> Result<Vec<String>, SessionError> {
        Ok(store.accounts()?.into_iter().map(|a| a.name).collect())
    };
    match selector {
        Some(s) => store.find_account(s)?.map_or_else(
            || {
                Err(SessionError::NoSuchAccount {
                    asked: s.to_owned(),
                    known: names()?,
                })
            },
            Ok,
        ),
        None => {
            let mut all = store.accounts()?;
            match all.len() {
                0 => Err(SessionError::NotSignedIn),
                1 => Ok(all.remove(0)),
                _ => Err(SessionError::ChooseAccount(names()?)),
            }
        }
    }
}

/// Signs out the account `selector` names (or the only one): its token and its cache go,
/// nothing of another account's. Not while an engine runs for this profile.
pub async fn logout(
    paths: &Paths,
    selector: Option<&str>,
    keychain: Arc<dyn Keychain>,
) -> Result<Option<AccountRow>, SessionError> {
    if !paths.db().exists() {
        return Ok(None);
    }
    let _lock = EngineLock::acquire(&paths.lock(), "quotabell logout")?;
    let mut store = Store::open(&paths.db())?;
    let account = match choose(&store, selector) {
        Ok(a) => a,
        Err(SessionError::NotSignedIn) => return Ok(None),
        Err(e) => return Err(e),
    };
    forget(&mut store, &account, keychain).await?;
    Ok(Some(account))
}

/// Deletes one account's token and cache; the caller holds the profile lock (or is the
/// process that does).
pub async fn forget(
    store: &mut Store,
    account: &AccountRow,
    keychain: Arc<dyn Keychain>,
) -> Result<(), SessionError> {
    let key = account.keychain_key();
    blocking(move || keychain.delete(&key)).await?;
    store.delete_account(account.id)?;
    Ok(())
}

/// The profile lock: one engine process per profile, however many accounts it follows.
pub fn lock_profile(paths: &Paths, who: &str) -> Result<EngineLock, SessionError> {
    std::fs::create_dir_all(&paths.data).map_err(|source| StoreError::CreateDir {
        path: paths.data.clone(),
        source,
    })?;
    Ok(EngineLock::acquire(&paths.lock(), who)?)
}

/// Builds the engine of one account, on a store connection of its own. The caller holds the
/// profile lock.
pub async fn open_engine(
    paths: &Paths,
    account: AccountRow,
    keychain: Arc<dyn Keychain>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    cfg: EngineConfig,
) -> Result<Engine, SessionError> {
    let store = Store::open(&paths.db())?;
    let key = account.keychain_key();
    let token = blocking(move || keychain.get(&key))
        .await?
        .ok_or_else(|| SessionError::TokenMissing(account.name.clone()))?;
    let url = ServerUrl::parse(&account.server_url)?;
    let api = ApiClient::new(url, token)?;
    Ok(Engine::new(store, account, api, notifier, clock, cfg))
}

/// Keychain calls block on D-Bus: keep them off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SecretError> + Send + 'static,
) -> Result<T, SecretError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(SecretError::Backend(format!("keychain task failed: {e}"))))
}
