//! Error types: `StoreError` for the storage layer, `ApiError` for what a client sees.

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("PostgreSQL error: {}", pg_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("cannot connect to PostgreSQL at {location}: {reason}")]
    Connect { location: String, reason: String },
    #[error(
        "the database schema is version {found}, newer than this build knows ({known}): run a newer quotabell-server"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the target database already has users; migrate into an empty one")]
    TargetNotEmpty,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("column {index} is not {expected}")]
    Column {
        index: usize,
        expected: &'static str,
    },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no user with email {0}")]
    NoSuchUser(String),
    #[error("no plan named {0}")]
    NoSuchPlan(String),
    #[error("a user with email {0} already exists")]
    UserExists(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the commit's outcome is unknown (the connection failed during COMMIT): {0}")]
    CommitUnknown(String),
    #[error("write transaction failed: {0}")]
    WriteFailed(String),
    #[error("the database holds an unreadable {0}")]
    Corrupt(String),
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        Self::Pool(e.to_string())
    }
}

/// tokio-postgres says only "db error" for a server-side error; the server's message is the
/// part worth reading.
fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    }
}

/// An error as the API reports it: `{"error": {"code", "message", ...extra}}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("code".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        let mut res = (self.status, Json(json!({ "error": body }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"quotabell\""),
            );
        }
        res
    }
}
