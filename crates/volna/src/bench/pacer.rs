//! Pacing a publisher: one of `senders` sharing a total rate, each waiting
//! its turn (a late tick is made up at once, as a steady rate wants), or no
//! waiting at all when the rate is 0.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// One publisher's pace.
pub(super) struct Pacer(Option<Interval>);

impl Pacer {
    /// The pace of one of `senders` publishers sharing `rate` per second
    /// (0: as fast as possible).
    pub(super) fn new(rate: f64, senders: usize) -> Pacer {
        Pacer((rate > 0.0).then(|| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(senders as f64 / rate));
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            t
        }))
    }

    /// Waits for the next turn.
    pub(super) async fn wait(&mut self) {
        if let Some(t) = self.0.as_mut() {
            t.tick().await;
        }
    }
}
