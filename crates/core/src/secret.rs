//! The API token and the OS keychain that holds it.
//!
//! `Token` never prints itself: Debug and Display show `Token(***)`, so a token that ends up in
//! a log line, an error or a panic message is still redacted. The only way to the text is
//! `expose()`, used where the token goes into an `Authorization` header.

use std::fmt;

/// An API token. Cloning is allowed (the engine and the stream each need one); printing is not.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token contains spaces or control characters")]
    BadCharacters,
    #[error("the token is longer than 4096 characters")]
    TooLong,
}

impl Token {
    pub fn new(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() > 4096 {
            return Err(TokenError::TooLong);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::BadCharacters);
        }
        Ok(Self(text.to_owned()))
    }

    /// The token text, for the `Authorization` header and the keychain only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no Secret Service is running: start your desktop's keyring (for example \
         `gnome-keyring-daemon --unlock --components=secrets`, or install gnome-keyring or \
         KeePassXC with Secret Service enabled); Quotabell never stores the token in a file ({0})"
    )]
    Unavailable(String),
    #[error("the keychain refused: {0}")]
    Backend(String),
    #[error("the stored token is not valid: {0}")]
    Corrupt(#[from] TokenError),
}

/// Where tokens live. Keys name an account: `origin#user_id`.
pub trait Keychain: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Token>, SecretError>;
    fn set(&self, key: &str, token: &Token) -> Result<(), SecretError>;
    fn delete(&self, key: &str) -> Result<(), SecretError>;
}

/// The OS keychain through the `keyring` crate: Secret Service on Linux, Keychain on macOS,
/// Credential Manager on Windows. Calls block (D-Bus round trips): run them off async threads.
pub struct OsKeychain {
    service: String,
}

pub const SERVICE: &str = "quotabell";

impl OsKeychain {
    pub fn new() -> Self {
        Self::with_service(SERVICE)
    }

    /// A keychain under another service name (tests use one of their own).
    pub fn with_service(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }

    fn entry(&self, key: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(&self.service, key).map_err(map_err)
    }
}

impl Default for OsKeychain {
    fn default() -> Self {
        Self::new()
    }
}

fn map_err(e: keyring::Error) -> SecretError {
    match e {
        keyring::Error::NoDefaultStore | keyring::Error::NoStorageAccess(_) => {
            SecretError::Unavailable(e.to_string())
        }
        keyring::Error::PlatformFailure(_) => SecretError::Unavailable(e.to_string()),
        other => SecretError::Backend(other.to_string()),
    }
}

impl Keychain for OsKeychain {
    fn get(&self, key: &str) -> Result<Option<Token>, SecretError> {
        match self.entry(key)?.get_password() {
            Ok(text) => Ok(Some(Token::new(&text)?)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    fn set(&self, key: &str, token: &Token) -> Result<(), SecretError> {
        self.entry(key)?
            .set_password(token.expose())
            .map_err(map_err)
    }

    fn delete(&self, key: &str) -> Result<(), SecretError> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let t = Token::new("  qb_secret123 \n").unwrap();
        assert_eq!(t.expose(), "qb_secret123");
        assert_eq!(
            format!("{t} {t:?} {:?}", Some(&t)),
            "*** Token(***) Some(Token(***))"
        );
        assert_eq!(Token::new(" "), Err(TokenError::Empty));
        assert_eq!(Token::new("a b"), Err(TokenError::BadCharacters));
    }
}
