//! What a scrape reads at the moment it is taken: the checks' latest results from this process and
//! the incident figures from the database (so that every replica reports the same incidents).

use checks::{CheckName, Status};
use entity::{Category, Severity};
use metrics::{counter, gauge};
use sea_orm::{ActiveEnum, Iterable};

use super::{names, Metrics};
use crate::state::AppState;

/// Sets every scrape-time figure, then renders the whole text.
pub(crate) async fn render(state: &AppState) -> String {
    let metrics = &state.metrics;
    let checks: Vec<_> = CheckName::ALL
        .iter()
        .filter_map(|name| state.latest.get(name.as_str()).map(|o| (*name, o)))
        .collect();
    let stats = state.incidents.stats(None).await;
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
        match &stats {
            Ok(s) => {
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
            Err(err) => {
                tracing::warn!(error = %err, "reading incident figures for a scrape failed");
                counter!(names::SCRAPE_ERRORS).increment(1);
            }
        }
    });
    Metrics::render(metrics)
}
