//! `GET /healthz` and `GET /readyz`, for load balancers and supervisors; no token needed, and
//! nothing about any user in the answer.
//!
//! Liveness says the process answers HTTP. Readiness says it can do its work: it is not shutting
//! down, its writer runs, and a read of the database succeeds. A load balancer takes an instance
//! that is not ready out of rotation; clients on it then reconnect elsewhere.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Shared;
use crate::error::ApiError;

/// Also says whether this instance runs the background jobs now (see `jobs`).
pub async fn healthz(State(st): State<Shared>) -> Json<Value> {
    Json(json!({ "status": "ok", "leader": st.leadership.is_leader() }))
}

pub async fn readyz(State(st): State<Shared>) -> Result<Json<Value>, ApiError> {
    let not_ready = |why: &str| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready: {why}"),
        )
    };
    if *st.shutdown.borrow() {
        return Err(not_ready("shutting down"));
    }
    if !st.writer.is_running() {
        return Err(not_ready("the writer has stopped"));
    }
    st.read(|sql| sql.query("SELECT count(*) FROM plans", &[]).map(drop))
        .await
        .map_err(|e| not_ready(&format!("the database cannot be read ({})", e.message)))?;
    Ok(Json(json!({ "status": "ready" })))
}
