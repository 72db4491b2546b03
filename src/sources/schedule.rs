//! Refresh schedules: a source may be refreshed every so often (`"6h"`,
//! `"1d"`) or at the times of a cron expression (`"0 3 * * *"`, UTC). Every
//! instance runs [`run`]; a due refresh is claimed in the store by exactly
//! one of them (the claim moves the source's next time on in the same
//! transaction, `SKIP LOCKED` on PostgreSQL), so it starts once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::crawl::{Registry, StartError};
use crate::store::{Source, StoreError};

/// The shortest interval a schedule may have.
pub const MIN_EVERY: Duration = Duration::from_secs(60);
/// Due refreshes one instance claims per look.
const CLAIM_BATCH: u32 = 16;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// How often each instance looks for due refreshes.
    pub tick: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self { tick: Duration::from_secs(10) }
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// `"6h"`, `"1d"`, `"90m"`, `"1w"`: at least a minute.
    pub fn every(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("refreshEvery '{s}' is not a duration such as \"6h\" or \"1d\": {e}"))?;
        if d < MIN_EVERY {
            return Err(format!("refreshEvery must be at least a minute, not '{s}'"));
        }
        Ok(Self::Every(d))
    }

    /// A five-field cron expression (minute hour day month weekday), in UTC.
    pub fn cron(s: &str) -> Result<Self, String> {
        let cron = croner::Cron::from_str(s.trim())
            .map_err(|e| format!("cron '{s}' is not a cron expression such as \"0 3 * * *\": {e}"))?;
        Ok(Self::Cron(Box::new(cron)))
    }

    /// The source's schedule as stored, if it has one.
    pub fn of(source: &Source) -> Option<Self> {
        match (&source.refresh_every, &source.cron) {
            (Some(every), _) => Self::every(every).ok(),
            (None, Some(cron)) => Self::cron(cron).ok(),
            (None, None) => None,
        }
    }

    /// The first time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => chrono::Duration::from_std(*d).ok().and_then(|d| t.checked_add_signed(d)),
            Self::Cron(c) => c.find_next_occurrence(&t, false).ok(),
        }
    }
}

/// The next time of a source's schedule after `now` (the store's claim calls it).
pub fn next_refresh(source: &Source, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Schedule::of(source).and_then(|s| s.next_after(now))
}

/// Looks for due refreshes every `tick` and starts them, until `stop`.
pub async fn run(registry: Arc<Registry>, settings: ScheduleSettings, stop: CancellationToken) {
    loop {
        if !crate::backoff::pause(&stop, settings.tick).await {
            return;
        }
        if let Err(e) = start_due(&registry).await {
            tracing::warn!(error = %e, "refresh schedules: could not claim due refreshes; trying again");
        }
    }
}

async fn start_due(registry: &Arc<Registry>) -> Result<(), StoreError> {
    let due = registry.store().claim_due_refreshes(Utc::now(), CLAIM_BATCH, next_refresh).await?;
    for source in due {
        match registry.refresh(&source, source.tenant.clone()).await {
            Ok(s) => tracing::info!(source_id = %source.id, progress_id = %s.progress_id, "scheduled refresh started"),
            Err(StartError::Store(StoreError::SourceBusy(_))) => {
                tracing::info!(source_id = %source.id, "scheduled refresh skipped: a crawl of the source is running")
            }
            Err(StartError::Store(StoreError::SourceGone(_))) => {
                tracing::info!(source_id = %source.id, "scheduled refresh skipped: the source was deleted")
            }
            Err(e) => tracing::warn!(source_id = %source.id, error = %e, "scheduled refresh could not start"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron_expressions_give_the_next_time() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T05:00:00Z").unwrap().with_timezone(&Utc);
        let six = Schedule::every("6h").unwrap();
        assert_eq!(six.next_after(t).unwrap().to_rfc3339(), "2026-12-02T11:00:00+00:00");
        let cron = Schedule::cron("0 3 * * *").unwrap();
        assert_eq!(cron.next_after(t).unwrap().to_rfc3339(), "2026-12-03T03:00:00+00:00");
        assert!(Schedule::every("10s").is_err(), "under a minute");
        assert!(Schedule::every("soon").is_err());
        assert!(Schedule::cron("every day").is_err());
    }
}
