//! Noticing that the machine slept (or its clock was set) without a timer of its own: the wall
//! clock and the monotonic clock are compared whenever the engine wakes up anyway (a chunk of
//! the stream, a keepalive included; a stalled stream; a long-poll answer). Monotonic time stops
//! in suspend while wall time does not, so a difference beyond `jump` between two looks is a
//! wake. A polling check would cost a wake-up every few seconds for the process's whole life;
//! this one costs nothing, and notices a suspend at the first keepalive after it, or at the
//! stream's watchdog when the connection did not survive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::clock::Clock;

/// Shared by every account's engine in a process: a suspend is the machine's.
#[derive(Clone)]
pub struct WakeWatch {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    jump: Duration,
    /// Wall time (unix seconds) and monotonic time at the last look.
    last: Mutex<(i64, Instant)>,
    woke: watch::Sender<u64>,
}

impl WakeWatch {
    pub fn new(clock: Arc<dyn Clock>, jump: Duration) -> Self {
        let last = Mutex::new((clock.now_unix(), clock.instant()));
        Self {
            inner: Arc::new(Inner {
                clock,
                jump,
                last,
                woke: watch::channel(0).0,
            }),
        }
    }

    /// Changes (to the wall time of the wake) whenever a look finds the clocks apart.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.woke.subscribe()
    }

    /// Compares the clocks since the last look, and announces a wake when they moved apart.
    pub fn look(&self) {
        let i = &self.inner;
        let (wall, mono) = (i.clock.now_unix(), i.clock.instant());
        let mut last = i.last.lock().unwrap_or_else(|e| e.into_inner());
        let wall_delta = (wall - last.0) as f64;
        let mono_delta = mono.saturating_duration_since(last.1).as_secs_f64();
        *last = (wall, mono);
        drop(last);
        // Wall time is read in whole seconds: a second of slack per look.
        if (wall_delta - mono_delta).abs() > i.jump.as_secs_f64() + 1.0 {
            tracing::info!(wall_delta, mono_delta, "clock jump: treating as a wake");
            i.woke.send_replace(wall.max(0) as u64);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// Wall time moves only when the test says; monotonic time is the real one.
    #[derive(Default)]
    pub(crate) struct JumpingClock(pub(crate) AtomicI64);

    impl Clock for JumpingClock {
        fn now_unix(&self) -> i64 {
            1_800_000_000 + self.0.load(Ordering::SeqCst)
        }
        fn instant(&self) -> Instant {
            Instant::now()
        }
        fn utc_offset(&self, _: i64) -> i32 {
            0
        }
    }

    #[test]
    fn a_wall_clock_jump_is_a_wake_at_the_next_look() {
        let clock = Arc::new(JumpingClock(AtomicI64::new(0)));
        let watch = WakeWatch::new(clock.clone(), Duration::from_secs(10));
        let mut woke = watch.subscribe();
        watch.look();
        assert!(
            !woke.has_changed().unwrap(),
            "no wake while the clocks agree"
        );
        clock.0.store(3600, Ordering::SeqCst); // an hour asleep
        assert!(
            !woke.has_changed().unwrap(),
            "nothing is noticed between looks"
        );
        watch.look();
        assert!(woke.has_changed().unwrap(), "the jump is noticed");
        assert_eq!(*woke.borrow_and_update(), 1_800_003_600);
        watch.look();
        assert!(!woke.has_changed().unwrap(), "a jump is announced once");
        // Backwards counts too (the clock was set back).
        clock.0.store(0, Ordering::SeqCst);
        watch.look();
        assert!(woke.has_changed().unwrap());
    }
}
