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
        days in proptest::option::of(any::<u8>()),
        margin in any::<u16>(),
        factor in proptest::option::of(any::<u8>()),
        min_builds in any::<u16>(),
    ) {
        let form = crate::ipc::SettingsForm {
            thresholds,
            quiet_start: start,
            quiet_end: end,
            urgent_through_quiet: true,
            notify_rejected_builds: true,
            start_at_login: false,
            early_warning_days: days,
            early_warning_margin_hours: margin,
            runaway_factor: factor,
            runaway_min_builds: min_builds,
            refill_notice: crate::ipc::RefillNotice::AfterTopThreshold,
        };
        match crate::dashboard::apply_form(&Settings::default(), &form) {
            Ok(s) => {
                prop_assert!(s.thresholds.iter().all(|t| (1..=100).contains(t)));
                let back = crate::dashboard::settings_form(&s, false);
                let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
                prop_assert_eq!(back.quiet_start, given(&form.quiet_start));
                prop_assert_eq!(back.quiet_end, given(&form.quiet_end));
                prop_assert_eq!(back.early_warning_days, days);
                prop_assert_eq!(back.runaway_factor, factor);
            }
            Err(e) => prop_assert!(e.field.is_some(), "{}", e.message),
        }
    }
}
