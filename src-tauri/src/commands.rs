//! The window's one command: relays a typed call to the tray process, which answers from
//! `quotabell_core::companion`. A new call needs nothing here: `Call` and the companion's match
//! declare it, and the UI's reply map types its answer.

use quotabell_core::ipc::{Call, IpcError};
use serde_json::Value;
use tauri::State;

use crate::relay::Relay;

/// Traced by the call's name only: the arguments may hold a token (`SignInForm`'s `Debug`
/// redacts it, but no argument is logged either way).
#[tauri::command]
#[tracing::instrument(skip_all, fields(call = %call.name()), err(Debug))]
pub async fn call(call: Call, relay: State<'_, Relay>) -> Result<Value, IpcError> {
    relay.call(call).await
}
