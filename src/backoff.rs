//! One policy for trying again: store writes during an outage, the cluster
//! listener's reconnects, the vector indexer after a failed batch, an urgent
//! event to a socket whose buffer is full, a terminal status the store
//! refused. Each names its [`Backoff`] as a constant beside the code that
//! uses it; the waiting, the growth and the giving up are written once here.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long to wait between tries, and when to stop trying.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// Gives up when the next wait would end past this long since the start.
    budget: Option<Duration>,
    /// Gives up after this many waits.
    waits: Option<u32>,
}

impl Backoff {
    /// Waits that double from `first` up to `max`, without end.
    pub const fn exponential(first: Duration, max: Duration) -> Self {
        Self { first, max, budget: None, waits: None }
    }

    /// The same wait every time, without end.
    pub const fn constant(every: Duration) -> Self {
        Self::exponential(every, every)
    }

    /// Gives up once trying would run past `budget` from the first try.
    pub const fn for_at_most(self, budget: Duration) -> Self {
        Self { budget: Some(budget), ..self }
    }

    /// Gives up after `n` waits.
    pub const fn waits(self, n: u32) -> Self {
        Self { waits: Some(n), ..self }
    }

    /// The wait after the `n`th failure (from 0), for a caller that keeps
    /// its count elsewhere (a delivery's attempts, in the store).
    pub fn nth(&self, n: u32) -> Duration {
        self.first.saturating_mul(2u32.saturating_pow(n.min(31))).min(self.max)
    }

    /// A run of tries under this policy, starting now.
    pub fn start(&self) -> Tries {
        Tries { policy: *self, started: Instant::now(), next: self.nth(0), waited: 0 }
    }
}

/// A run of tries: the wait before each next one.
#[derive(Debug)]
pub struct Tries {
    policy: Backoff,
    started: Instant,
    next: Duration,
    waited: u32,
}

impl Tries {
    /// The try about to be made, from 1.
    pub fn attempt(&self) -> u32 {
        self.waited + 1
    }

    /// The wait before the next try, or `None` when the policy gives up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let p = &self.policy;
        if p.waits.is_some_and(|n| self.waited >= n) || p.budget.is_some_and(|b| self.started.elapsed() + self.next > b)
        {
            return None;
        }
        let delay = self.next;
        self.waited += 1;
        self.next = p.nth(self.waited);
        Some(delay)
    }

    /// Waits before the next try: [`Wait::Again`] when it is time,
    /// [`Wait::Stopped`] when `stop` fired first, [`Wait::GaveUp`] when the
    /// policy has no more tries.
    pub async fn wait(&mut self, stop: &CancellationToken) -> Wait {
        match self.next_delay() {
            None => Wait::GaveUp,
            Some(d) if pause(stop, d).await => Wait::Again,
            Some(_) => Wait::Stopped,
        }
    }

    /// Starts over after a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        *self = self.policy.start();
    }
}

/// What [`Tries::wait`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Again,
    Stopped,
    GaveUp,
}

/// Sleeps `d` unless `stop` fires first; whether the whole time passed.
pub async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    stop.run_until_cancelled(tokio::time::sleep(d)).await.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum() {
        let mut t = Backoff::exponential(Duration::from_millis(50), Duration::from_millis(300)).start();
        let d: Vec<_> = (0..5).map_while(|_| t.next_delay()).map(|d| d.as_millis()).collect();
        assert_eq!(d, [50, 100, 200, 300, 300]);
        let p = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(600));
        assert_eq!(p.nth(3), Duration::from_secs(8));
        assert_eq!(p.nth(40), Duration::from_secs(600));
    }

    #[test]
    fn a_bounded_policy_gives_up() {
        let mut t = Backoff::constant(Duration::from_millis(1)).waits(2).start();
        assert_eq!(t.attempt(), 1);
        assert!(t.next_delay().is_some() && t.next_delay().is_some());
        assert_eq!(t.attempt(), 3);
        assert_eq!(t.next_delay(), None);
        let mut t = Backoff::constant(Duration::from_secs(2)).for_at_most(Duration::from_secs(1)).start();
        assert_eq!(t.next_delay(), None, "a wait that would end past the budget is not made");
        t.reset();
        assert_eq!(t.attempt(), 1);
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_at_once() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut t = Backoff::constant(Duration::from_secs(3600)).start();
        assert_eq!(t.wait(&stop).await, Wait::Stopped);
    }
}
