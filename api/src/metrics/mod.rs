//! Prometheus metrics: the one recorder of a running service, what the request path and the
//! features record into it, and the scrape that adds what is read from the stores at scrape time.
//!
//! The recorder is per service (held in the state, never installed globally), so that several
//! services in one test process keep their figures apart.

pub mod http;
pub mod routes;
mod scrape;

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::gate::GateVerdict;

/// Latency buckets for HTTP requests, in seconds: probes answer in well under a millisecond, a
/// doctor run may take the checks' whole timeout.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric's name, in one place so that the recording sites, the scrape and the tests agree.
pub mod names {
    pub const HTTP_REQUESTS: &str = "opsdoctor_http_requests_total";
    pub const HTTP_DURATION: &str = "opsdoctor_http_request_duration_seconds";
    pub const CHECK_UP: &str = "opsdoctor_check_up";
    pub const CHECK_DURATION: &str = "opsdoctor_check_duration_seconds";
    pub const CHECK_LAST_RUN: &str = "opsdoctor_check_last_run_timestamp_seconds";
    pub const GATE_VERDICTS: &str = "opsdoctor_gate_verdicts_total";
    pub const INCIDENTS_OPEN: &str = "opsdoctor_incidents_open";
    pub const INCIDENTS_OPENED: &str = "opsdoctor_incidents_opened_total";
    pub const INCIDENTS_RESOLVED: &str = "opsdoctor_incidents_resolved_total";
    pub const MTTR: &str = "opsdoctor_incident_mean_time_to_resolve_seconds";
    pub const DEPLOYS_FINISHED: &str = "opsdoctor_deploys_finished_total";
    pub const FLAGGER_ROLLBACKS: &str = "opsdoctor_flagger_rollback_answers_total";
    pub const DB_BREAKER_STATE: &str = "opsdoctor_db_breaker_state";
    pub const SPOOL_DEPTH: &str = "opsdoctor_spool_depth";
    pub const SPOOL_BYTES: &str = "opsdoctor_spool_bytes";
    pub const SPOOL_MAX_BYTES: &str = "opsdoctor_spool_max_bytes";
    pub const SPOOL_QUEUED: &str = "opsdoctor_spool_queued_total";
    pub const SPOOL_REPLAYED: &str = "opsdoctor_spool_replayed_total";
    pub const SPOOL_REJECTED: &str = "opsdoctor_spool_rejected_total";
    pub const RECOVERY_ATTEMPTS: &str = "opsdoctor_recovery_attempts_total";
    pub const SCRAPE_ERRORS: &str = "opsdoctor_metrics_scrape_errors_total";
    pub const BUILD_INFO: &str = "opsdoctor_build_info";
}

/// The service's metrics: cheap to clone, recorded from any task.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::HTTP_DURATION.to_owned()), HTTP_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let metrics = Self {
            recorder: Arc::new(recorder),
            handle,
        };
        metrics.with(describe);
        metrics
    }

    /// Runs `f` with this service's recorder as the one the `metrics` macros record into.
    pub(crate) fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// The metrics as Prometheus text (format 0.0.4).
    pub(crate) fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// One gate verdict answered, by verdict, environment and caller (`api` or `flagger`).
    pub fn gate_verdict(&self, verdict: &GateVerdict, source: &'static str) {
        let verdict_label = verdict.verdict.as_str();
        let environment = verdict.environment.clone();
        self.with(|| {
            counter!(names::GATE_VERDICTS, "verdict" => verdict_label, "environment" => environment, "source" => source)
                .increment(1);
        });
    }

    /// One deploy finished, by environment and outcome.
    pub fn deploy_finished(&self, environment: &str, status: &str) {
        let (environment, status) = (environment.to_owned(), status.to_owned());
        self.with(|| {
            counter!(names::DEPLOYS_FINISHED, "environment" => environment, "status" => status)
                .increment(1);
        });
    }

    /// One answer to Flagger's rollback hook: `rollback` true when it said "roll back now".
    pub fn flagger_rollback_answer(&self, rollback: bool, why: &'static str) {
        let answer = if rollback { "rollback" } else { "hold" };
        self.with(|| {
            counter!(names::FLAGGER_ROLLBACKS, "answer" => answer, "why" => why).increment(1);
        });
    }

    /// One recovery attempt of a component, by component, action and outcome.
    pub fn recovery_attempt(&self, component: &str, action: &'static str, outcome: &'static str) {
        let component = component.to_owned();
        self.with(|| {
            counter!(names::RECOVERY_ATTEMPTS, "component" => component, "action" => action, "outcome" => outcome)
                .increment(1);
        });
    }

    /// One HTTP request served.
    pub(crate) fn http_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        took: Duration,
    ) {
        let route = route.to_owned();
        self.with(|| {
            counter!(names::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
                .increment(1);
            metrics::histogram!(names::HTTP_DURATION, "method" => method, "route" => route)
                .record(took.as_secs_f64());
        });
    }
}

/// The HELP and unit of every metric, so a scrape documents itself (promtool asks for HELP).
fn describe() {
    use names::*;
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "time to answer an HTTP request, by method and route template"
    );
    describe_gauge!(CHECK_UP, "1 when the check's latest result passed or warned, 0 when it failed (skipped checks are absent)");
    describe_gauge!(
        CHECK_DURATION,
        Unit::Seconds,
        "how long the check's latest run took"
    );
    describe_gauge!(
        CHECK_LAST_RUN,
        Unit::Seconds,
        "when the check last ran, as a Unix time"
    );
    describe_counter!(
        GATE_VERDICTS,
        "gate verdicts answered, by verdict, environment and caller"
    );
    describe_gauge!(INCIDENTS_OPEN, "open incidents, by category and severity");
    describe_counter!(
        INCIDENTS_OPENED,
        "incidents ever opened (from the database, so every replica agrees)"
    );
    describe_counter!(
        INCIDENTS_RESOLVED,
        "incidents ever resolved (from the database)"
    );
    describe_gauge!(
        MTTR,
        Unit::Seconds,
        "mean time from opening to resolving, over every resolved incident"
    );
    describe_counter!(
        DEPLOYS_FINISHED,
        "deploys finished through this process, by environment and outcome"
    );
    describe_counter!(
        FLAGGER_ROLLBACKS,
        "answers to Flagger's rollback hook, by answer and reason"
    );
    describe_gauge!(
        DB_BREAKER_STATE,
        "the database circuit breaker: 1 for its current state (closed, open, half_open), 0 for the others"
    );
    describe_gauge!(SPOOL_DEPTH, "writes waiting in the spool for the database");
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "the spool's size on disk");
    describe_gauge!(
        SPOOL_MAX_BYTES,
        Unit::Bytes,
        "the spool's cap (SPOOL_MAX_BYTES); at the cap writes get 507"
    );
    describe_counter!(
        SPOOL_QUEUED,
        "writes acknowledged into the spool since the process started"
    );
    describe_counter!(
        SPOOL_REPLAYED,
        "spooled writes stored by replay since the process started"
    );
    describe_counter!(
        SPOOL_REJECTED,
        "spooled writes the database refused at replay (kept in rejected.jsonl)"
    );
    describe_counter!(
        RECOVERY_ATTEMPTS,
        "recovery attempts through this process, by component, action and outcome"
    );
    describe_counter!(
        SCRAPE_ERRORS,
        "scrapes whose figures from the database could not be read"
    );
    describe_gauge!(BUILD_INFO, "always 1; the labels name the running build");
}
