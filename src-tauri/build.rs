fn main() {
    // The app's one command (`call`, which carries a typed `Call`), gated by its generated
    // `allow-call` permission that the window's capability lists (capabilities/window.json).
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(&["call"])),
    )
    .expect("tauri build script failed");
}
