fn main() {
    // The app's own commands, each gated by a generated `allow-<command>` permission that the
    // window's capability lists (capabilities/window.json).
    let commands = &[
        "snapshot",
        "usage_history",
        "builds",
        "build_apps",
        "notifications",
        "settings",
        "save_settings",
        "sign_in",
        "sign_out",
        "pause",
    ];
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(commands)),
    )
    .expect("tauri build script failed");
}
