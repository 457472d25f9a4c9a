//! The hub's one millisecond clock: [`clock_ms`] reads tokio's clock
//! ([`tokio::time::Instant`]), and [`clock_instant`] turns a [`clock_ms`]
//! time back into a tokio instant, so a pacing deadline can be slept on
//! with [`tokio::time::sleep_until`] and both agree, under tokio's paused
//! test time as much as in real time.
//!
//! The clock counts whole milliseconds from a process-wide epoch (the first
//! instant it was read at) in a `u32` that wraps after ~49 days: compare
//! its times with `wrapping_sub`, never with `<`.

use std::sync::OnceLock;

use tokio::time::{Duration, Instant};

/// What the clock reads at its epoch: well past 0, the "last written" of an
/// outbox never written, so that such an outbox never looks busy.
const START: u32 = 1 << 24;

/// The instant at which the clock reads [`START`].
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whole milliseconds from the epoch to `at`, rounded down; negative for an
/// instant before it (a paused test clock may stand before an epoch that
/// another runtime set).
fn millis_since_epoch(at: Instant) -> i64 {
    let epoch = epoch();
    match at.checked_duration_since(epoch) {
        Some(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        None => {
            let before = epoch.duration_since(at).as_nanos().div_ceil(1_000_000);
            -i64::try_from(before).unwrap_or(i64::MAX)
        }
    }
}

/// The clock's reading `millis` milliseconds after the epoch.
fn reading(millis: i64) -> u32 {
    // Truncating to 32 bits is the wrap.
    START.wrapping_add(millis as u32)
}

/// Milliseconds on a process-wide monotonic clock, wrapping after ~49 days
/// (compare with `wrapping_sub`). Pacing ([`Outbox::push_paced`]) and
/// [`DirectSink::schedule_at`] deadlines use it; [`clock_instant`] turns
/// one into a [`tokio::time::Instant`].
///
/// It reads [`tokio::time::Instant::now`], so it advances with tokio's
/// clock: in tests on paused time (`start_paused`, `tokio::time::advance`)
/// it stands still with it. Off a runtime (or on one whose time is not
/// paused) that is the system's monotonic clock.
///
/// [`Outbox::push_paced`]: super::Outbox::push_paced
/// [`DirectSink::schedule_at`]: super::DirectSink::schedule_at
pub fn clock_ms() -> u32 {
    reading(millis_since_epoch(Instant::now()))
}

/// The [`tokio::time::Instant`] at which [`clock_ms`] reads `ms` (the start
/// of that millisecond), e.g. to `tokio::time::sleep_until` a pacing
/// deadline: `clock_ms()` at `clock_instant(ms)` is `ms`.
///
/// Wrapping-aware: `ms` is taken as the time nearest to now that the
/// clock reads `ms` at, so a deadline up to ~24 days ahead (or behind)
/// maps right across the clock's wrap. A deadline already past gives an
/// instant in the past, which `sleep_until` does not wait for.
pub fn clock_instant(ms: u32) -> Instant {
    let now = millis_since_epoch(Instant::now());
    // Half a lap either way: as i32, the signed distance from now.
    let ahead = i64::from(ms.wrapping_sub(reading(now)) as i32);
    let millis = now + ahead;
    let epoch = epoch();
    let offset = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        epoch + offset
    } else {
        // Before any instant the platform can hold: the earliest it can.
        epoch.checked_sub(offset).unwrap_or(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_milliseconds_rounded_down_on_both_sides_of_the_epoch() {
        let epoch = epoch();
        let half = Duration::from_micros(1_500);
        assert_eq!(millis_since_epoch(epoch), 0);
        assert_eq!(millis_since_epoch(epoch + half), 1);
        if let Some(before) = epoch.checked_sub(half) {
            assert_eq!(millis_since_epoch(before), -2);
        }
        assert_eq!(reading(0), START);
        assert_eq!(reading(-2), START - 2);
        assert_eq!(reading(i64::from(u32::MAX - START) + 1), 0, "wraps");
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_and_round_trips() {
        // Paused: the clock stands still with tokio's…
        let t0 = clock_ms();
        let at0 = clock_instant(t0);
        let now = Instant::now();
        assert!(at0 <= now && now - at0 < Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock_ms(), t0, "real time does not move it");

        // …and advances with it, to the millisecond.
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock_ms(), t0.wrapping_add(250));
        assert_eq!(clock_instant(t0), at0, "the same instant as before");

        // A deadline ahead: sleeping until its instant reaches it.
        let deadline = clock_ms().wrapping_add(40);
        let at = clock_instant(deadline);
        let ahead = at - Instant::now();
        assert!(ahead > Duration::from_millis(39) && ahead <= Duration::from_millis(40));
        tokio::time::sleep_until(at).await;
        assert_eq!(clock_ms(), deadline);

        // A deadline behind is an instant behind.
        let behind = Instant::now() - clock_instant(clock_ms().wrapping_sub(10));
        assert!(behind >= Duration::from_millis(10) && behind < Duration::from_millis(11));

        // Across the wrap: 5 ms before it, a deadline 20 ms ahead reads
        // small but is still 20 ms ahead.
        let to_wrap = u32::MAX - clock_ms() - 5;
        tokio::time::advance(Duration::from_millis(u64::from(to_wrap))).await;
        assert_eq!(clock_ms(), u32::MAX - 5);
        let deadline = clock_ms().wrapping_add(20);
        assert_eq!(deadline, 14);
        let at = clock_instant(deadline);
        let ahead = at - Instant::now();
        assert!(ahead > Duration::from_millis(19) && ahead <= Duration::from_millis(20));
        tokio::time::sleep_until(at).await;
        assert_eq!(clock_ms(), deadline);
    }
}
