//! The settings form from the window, whatever its fields hold.

use proptest::prelude::*;

use crate::policy::Settings;

proptest! {
    /// The settings form from the window: settings or an error naming the field; accepted
    /// quiet hours read back as the very text given.
    #[test]
    fn fuzz_settings_form(
        thresholds in proptest::collection::vec(any::<u8>(), 0..6),
        start in proptest::option::of(prop_oneof![Just("22:00".to_owned()), "[0-9+]{2}:[0-9+]{2}", any::<String>()]),
        end in proptest::option::of(prop_oneof![Just("07:30".to_owned()), "[0-9+]{2}:[0-9+]{2}", any::<String>()]),
    ) {
        let form = crate::ipc::SettingsForm {
            thresholds,
            quiet_start: start,
            quiet_end: end,
            urgent_through_quiet: true,
            notify_rejected_builds: true,
            start_at_login: false,
        };
        match crate::dashboard::apply_form(&Settings::default(), &form) {
            Ok(s) => {
                prop_assert!(s.thresholds.iter().all(|t| (1..=100).contains(t)));
                let back = crate::dashboard::settings_form(&s, false);
                let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
                prop_assert_eq!(back.quiet_start, given(&form.quiet_start));
                prop_assert_eq!(back.quiet_end, given(&form.quiet_end));
            }
            Err(e) => prop_assert!(e.field.is_some(), "{}", e.message),
        }
    }
}
