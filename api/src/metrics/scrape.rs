//! What a scrape reads at the moment it is taken: the checks' latest results from this process and
//! the incident figures from the database (so that every replica reports the same incidents).

use checks::{CheckName, Status};
use entity::{Category, Severity};
use metrics::{counter, gauge};
use sea_orm::{ActiveEnum, Iterable};

use super::{names, Metrics};
use crate::resilience::BreakerState;
use crate::state::AppState;

/// Sets every scrape-time figure, then renders the whole text.
pub(crate) async fn render(state: &AppState) -> String {
    let metrics = &state.metrics;
    let checks: Vec<_> = CheckName::ALL
        .iter()
        .filter_map(|name| state.latest.get(name.as_str()).map(|o| (*name, o)))
        .collect();
    // While the breaker is open the incident figures are left out (the scrape never waits on
    // the database); the breaker and the spool are what matter then.
    let usable = state.resilience.database_usable();
    let stats = match usable {
        true => Some(state.incidents.stats(None).await),
        false => None,
    };
    let resilience = state.resilience.view();
    metrics.with(|| {
        gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => env!("OPSDOCTOR_GIT_COMMIT"))
            .set(1.0);
        for (name, observed) in &checks {
            let r = &observed.result;
            let label = name.as_str();
            if r.status == Status::Skipped {
                continue;
            }
            let up = if r.status == Status::Fail { 0.0 } else { 1.0 };
            gauge!(names::CHECK_UP, "check" => label).set(up);
            gauge!(names::CHECK_DURATION, "check" => label).set(r.latency_ms as f64 / 1000.0);
            gauge!(names::CHECK_LAST_RUN, "check" => label)
                .set(observed.at.timestamp_millis() as f64 / 1000.0);
        }
        for (label, state) in [
            ("closed", BreakerState::Closed),
            ("open", BreakerState::Open),
            ("half_open", BreakerState::HalfOpen),
        ] {
            let current = f64::from(u8::from(resilience.breaker.state == state));
            gauge!(names::DB_BREAKER_STATE, "state" => label).set(current);
        }
        gauge!(names::SPOOL_DEPTH).set(resilience.spool.depth as f64);
        gauge!(names::SPOOL_BYTES).set(resilience.spool.bytes as f64);
        gauge!(names::SPOOL_MAX_BYTES).set(resilience.spool.max_bytes as f64);
        counter!(names::SPOOL_QUEUED).absolute(resilience.queued_total);
        counter!(names::SPOOL_REPLAYED).absolute(resilience.replayed_total);
        counter!(names::SPOOL_REJECTED).absolute(resilience.rejected_total);
        match &stats {
            None => {}
            Some(Ok(s)) => {
                for category in Category::iter() {
                    for severity in Severity::iter() {
                        let open = s
                            .open_by_category_and_severity
                            .iter()
                            .find(|(c, v, _)| *c == category && *v == severity)
                            .map_or(0, |(_, _, n)| *n);
                        gauge!(names::INCIDENTS_OPEN, "category" => category.to_value(), "severity" => severity.to_value())
                            .set(open as f64);
                    }
                }
                counter!(names::INCIDENTS_OPENED).absolute(s.open_total + s.resolved_total);
                counter!(names::INCIDENTS_RESOLVED).absolute(s.resolved_total);
                gauge!(names::MTTR).set(s.mean_time_to_resolve_seconds.unwrap_or(0.0));
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "reading incident figures for a scrape failed");
                counter!(names::SCRAPE_ERRORS).increment(1);
            }
        }
    });
    Metrics::render(metrics)
}
