//! Reconnection delays: exponential with full jitter from 1 s to 60 s, never below the
//! server's `retry:` hint, and back to the start after a connection stayed healthy.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

/// A connection that lived this long counts as healthy: the next failure starts over.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: uniformly random in `[floor, min(max, base·2^attempt)]`, where the floor
    /// is the server's hint (if any, capped at `max`). Jitter spreads reconnects of many
    /// clients after a server restart.
    pub fn next_delay(&mut self, server_hint: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = server_hint.unwrap_or(Duration::ZERO).min(self.max);
        if ceiling <= floor {
            return floor;
        }
        let span = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(rng.random_range(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay(None, &mut rng)).collect();
        assert!(delays[0] <= Duration::from_secs(1));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(
            delays[6..].iter().any(|d| *d > Duration::from_secs(8)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_delay(None, &mut rng) <= Duration::from_secs(1));
    }

    #[test]
    fn honours_the_server_hint() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut b = Backoff::default();
        let d = b.next_delay(Some(Duration::from_secs(5)), &mut rng);
        assert!(d >= Duration::from_secs(5));
        let d = b.next_delay(Some(Duration::from_secs(600)), &mut rng);
        assert_eq!(d, Duration::from_secs(60), "capped");
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
