//! Why a notification did or did not come: every decision the policy takes is in the log with
//! what became of it, and `quotabell notifications --why` lists those not shown, each with its
//! reason, against a real backend that announces thresholds the user does not have.

use std::time::Duration;

use crate::support::*;

#[test]
fn notifications_why_lists_each_decision_not_shown_with_its_reason() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(
        dir.path(),
        &["--keepalive-secs", "0.5", "--retry-ms", "100"],
    );
    let token = backend.add_user("why@example.test", "free");
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.login(&backend.url(), &token);
    // Paused for ten hours: the 80% crossing is decided, and held back for that reason.
    let (ok, _, err) = engine.run(&["settings", "--pause-minutes", "600"], None);
    assert!(ok, "{err}");
    engine.start_watch();
    for n in 0..90 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    // The server announces 80% and 90%; the user's thresholds are 80 and 100.
    let decided = |key: &str| {
        engine
            .notifications()
            .into_iter()
            .any(|n| n["dedupe_key"].as_str().is_some_and(|k| k.starts_with(key)))
    };
    wait_until("both crossings decided", Duration::from_secs(30), || {
        decided("quota:builds:") && decided("skipped:quota:builds:")
    });
    let (ok, out, err) = engine.run(&["notifications", "--why"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("Builds at 80% of your Free plan\n        Not shown: paused."),
        "{out}"
    );
    assert!(
        out.contains(
            "Builds at 90%\n        Not shown: 90% is not one of your thresholds (80%, 100%)."
        ),
        "{out}"
    );
    // Only what was not shown: nothing reached the daemon, and every line is a decision
    // with its reason under it.
    assert_eq!(desktop.notifications().len(), 0);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("        Not shown: "))
            .count(),
        2,
        "{out}"
    );
}
