//! The central rate limit: at least a minimum interval between two restarts, and at most so many
//! in any hour, over the record of restarts ([`super::history`]).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

const HOUR: Duration = Duration::from_secs(3600);

/// At least `min_interval` between two restarts, and at most `per_hour` in any hour.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub min_interval: Duration,
    pub per_hour: u32,
}

pub(super) fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl RateLimit {
    /// When the next restart is allowed after restarts at `past` (any order), and why; `None`
    /// when one is allowed at `now`.
    pub fn next_allowed(
        &self,
        past: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, String)> {
        let mut times = past.to_vec();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let mut next: Option<(DateTime<Utc>, String)> = None;
        if let Some(&last) = times.first() {
            let allowed = last + chrono(self.min_interval);
            if allowed > now {
                next = Some((
                    allowed,
                    format!(
                        "the last restart was at {}, and restarts are at least {} apart",
                        at(last),
                        humantime::format_duration(self.min_interval)
                    ),
                ));
            }
        }
        let hour_ago = now - chrono(HOUR);
        let in_hour: Vec<DateTime<Utc>> = times.into_iter().filter(|t| *t > hour_ago).collect();
        let cap = usize::try_from(self.per_hour).unwrap_or(usize::MAX).max(1);
        if in_hour.len() >= cap {
            // Allowed again when the cap-th newest leaves the hour.
            let allowed = in_hour[cap - 1] + chrono(HOUR);
            if next.as_ref().is_none_or(|(t, _)| allowed > *t) {
                next = Some((
                    allowed,
                    format!(
                        "{} restarts in the last hour, and at most {} are allowed in any hour",
                        in_hour.len(),
                        self.per_hour
                    ),
                ));
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> RateLimit {
        RateLimit {
            min_interval: Duration::from_secs(300),
            per_hour: 3,
        }
    }

    fn ago(now: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
        now - chrono::Duration::minutes(minutes)
    }

    #[test]
    fn no_restart_yet_or_long_ago_is_allowed_now() {
        let now = Utc::now();
        assert_eq!(limit().next_allowed(&[], now), None);
        assert_eq!(
            limit().next_allowed(&[ago(now, 61), ago(now, 90)], now),
            None
        );
    }

    #[test]
    fn the_minimum_interval_counts_from_the_newest_restart_in_any_order() {
        let now = Utc::now();
        let (next, why) = limit()
            .next_allowed(&[ago(now, 70), ago(now, 2), ago(now, 30)], now)
            .expect("limited");
        assert_eq!(next, ago(now, 2) + chrono::Duration::minutes(5));
        assert!(why.contains("at least 5m apart"), "{why}");
        assert_eq!(
            limit().next_allowed(&[ago(now, 5)], now),
            None,
            "exactly the interval ago"
        );
    }

    #[test]
    fn the_hourly_cap_waits_for_the_oldest_counting_restart_to_leave_the_hour() {
        let now = Utc::now();
        let past = [ago(now, 10), ago(now, 20), ago(now, 40), ago(now, 59)];
        let (next, why) = limit().next_allowed(&past, now).expect("limited");
        // Four in the hour with a cap of three: allowed when the third newest (40 min ago)
        // leaves the hour, 20 minutes from now, which is later than the interval's 10 min ago + 5.
        assert_eq!(next, ago(now, 40) + chrono::Duration::hours(1));
        assert!(why.contains("4 restarts in the last hour"), "{why}");
        let two = [ago(now, 10), ago(now, 20)];
        assert_eq!(limit().next_allowed(&two, now), None, "two of three");
    }

    #[test]
    fn a_zero_interval_leaves_only_the_hourly_cap() {
        let now = Utc::now();
        let limit = RateLimit {
            min_interval: Duration::ZERO,
            per_hour: 1,
        };
        let (next, _) = limit.next_allowed(&[now], now).expect("limited");
        assert_eq!(next, now + chrono::Duration::hours(1));
    }
}
