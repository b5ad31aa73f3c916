fn main() {
    // The app's one command (`call`, which carries a typed `Call`), gated by its generated
    // `allow-call` permission that the window's capability lists (capabilities/window.json).
    // The configuration sits at the top of the repository, beside Cargo.toml; the paths in it
    // are relative to it. `generate_context!` names the same file (tray_process.rs,
    // window_process.rs).
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .config_path("../tauri.conf.json")
            .app_manifest(tauri_build::AppManifest::new().commands(&["call"])),
    )
    .expect("tauri build script failed");
}
