//! The window's commands: each relays one typed call to the tray process, which answers from
//! `quotabell_core::companion`. No logic here; the types are `quotabell_core::ipc`'s.

use quotabell_core::ipc::{
    BuildPage, BuildQuery, Call, IpcError, NotificationPage, PageQuery, PauseChoice, SettingsForm,
    SignInForm, Snapshot, UsageSeries,
};
use tauri::State;

use crate::window_process::Relay;

type Reply<T> = Result<T, IpcError>;

#[tauri::command]
#[tracing::instrument(skip_all, err(Debug))]
pub async fn snapshot(relay: State<'_, Relay>) -> Reply<Snapshot> {
    relay.call(Call::Snapshot).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Debug))]
pub async fn usage_history(relay: State<'_, Relay>) -> Reply<Vec<UsageSeries>> {
    relay.call(Call::UsageHistory).await
}

#[tauri::command]
#[tracing::instrument(skip(relay), err(Debug))]
pub async fn builds(query: BuildQuery, relay: State<'_, Relay>) -> Reply<BuildPage> {
    relay.call(Call::Builds(query)).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Debug))]
pub async fn build_apps(relay: State<'_, Relay>) -> Reply<Vec<String>> {
    relay.call(Call::BuildApps).await
}

#[tauri::command]
#[tracing::instrument(skip(relay), err(Debug))]
pub async fn notifications(query: PageQuery, relay: State<'_, Relay>) -> Reply<NotificationPage> {
    relay.call(Call::Notifications(query)).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Debug))]
pub async fn settings(relay: State<'_, Relay>) -> Reply<SettingsForm> {
    relay.call(Call::Settings).await
}

#[tauri::command]
#[tracing::instrument(skip(relay), err(Debug))]
pub async fn save_settings(form: SettingsForm, relay: State<'_, Relay>) -> Reply<SettingsForm> {
    relay.call(Call::SaveSettings(form)).await
}

/// `form` holds the token: its `Debug` redacts it, and it is not logged here either way.
#[tauri::command]
#[tracing::instrument(skip_all, fields(server = %form.server), err(Debug))]
pub async fn sign_in(form: SignInForm, relay: State<'_, Relay>) -> Reply<Snapshot> {
    relay.call(Call::SignIn(form)).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Debug))]
pub async fn sign_out(relay: State<'_, Relay>) -> Reply<Snapshot> {
    relay.call(Call::SignOut).await
}

#[tauri::command]
#[tracing::instrument(skip(relay), err(Debug))]
pub async fn pause(choice: PauseChoice, relay: State<'_, Relay>) -> Reply<Snapshot> {
    relay.call(Call::Pause(choice)).await
}
