//! The reconnect delay under any `retry:` hint the server may send.

use std::time::Duration;

use proptest::prelude::*;

use crate::sse_guard::SseGuard;

proptest! {
    /// Whatever `retry:` the server sends (any digits the guard accepts, up to u64::MAX ms),
    /// the reconnect delay stays within [hint capped at the maximum, maximum].
    #[test]
    fn fuzz_backoff_with_any_server_hint(digits in "[0-9]{1,25}", attempts in 0usize..70, seed in any::<u64>()) {
        use rand::SeedableRng;
        let mut guard = SseGuard::new(1024);
        guard.push(format!("retry: {digits}\n\n").as_bytes());
        let hint = guard.retry_ms.map(Duration::from_millis);
        prop_assert_eq!(guard.retry_ms, digits.parse::<u64>().ok());
        let mut b = crate::backoff::Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..attempts {
            let d = b.next_delay(hint, &mut rng);
            prop_assert!(d <= Duration::from_secs(60));
            prop_assert!(d >= hint.unwrap_or_default().min(Duration::from_secs(60)));
        }
    }
}
