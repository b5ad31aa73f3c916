//! `GET /account` and `GET /usage`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AuthUser, Shared};
use crate::account;
use crate::error::ApiError;

pub async fn account(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let acct = st.read(move |c| account::load(c, user)).await?;
    Ok(Json(acct.account_json()))
}

pub async fn usage(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let acct = st.read(move |c| account::load(c, user)).await?.as_of(now);
    Ok(Json(json!({
        "period": acct.period_json(),
        "plan": acct.plan,
        "quotas": acct.quotas_json(),
        "last_event_id": acct.last_event_id.to_string(),
        "stream_epoch": acct.stream_epoch,
    })))
}
