//! Builds the one check registry from configuration, and keeps each check's latest result.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use checks::cloudflare::CloudflareCheck;
use checks::database::DatabaseCheck;
use checks::http::probe_client;
use checks::openai::OpenAiCheck;
use checks::stripe::StripeCheck;
use checks::tunnel::TunnelCheck;
use checks::write_health::WriteHealth;
use checks::{CheckName, CheckResult, Registry, RegistryPolicy};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::decisions::{mark_consequences, Decision, DecisionPolicy, Decisions};

/// The registry every consumer (readiness, the doctor, the CLI, the gate) runs checks through.
pub fn build_registry(config: &Config, db: DatabaseConnection, writes: WriteHealth) -> Registry {
    let c = &config.checks;
    let policy = RegistryPolicy {
        default_timeout: c.default_timeout,
        timeouts: c.timeouts.clone(),
        required: c.required.clone(),
    };
    // Each HTTP client times out with its check, so no request outlives the check that made it.
    let client = |name: CheckName| probe_client(policy.timeout_of(name));
    Registry::new(
        vec![
            Arc::new(
                DatabaseCheck::new(db, config.database_location())
                    .server(config.database_server())
                    .write_health(writes),
            ),
            Arc::new(TunnelCheck::new(
                c.tunnel.clone(),
                client(CheckName::Tunnel),
            )),
            Arc::new(OpenAiCheck::new(
                c.openai.clone(),
                client(CheckName::Openai),
            )),
            Arc::new(StripeCheck::new(
                c.stripe.clone(),
                client(CheckName::Stripe),
            )),
            Arc::new(CloudflareCheck::new(
                c.cloudflare.clone(),
                client(CheckName::Cloudflare),
            )),
        ],
        policy,
    )
    .with_retry(config.decisions.retry_max_delay)
}

/// One check's latest result in this process, and what the thresholds make of it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub result: CheckResult,
    /// The check's state by the thresholds after this observation (see [`crate::decisions`]).
    pub decision: Decision,
    pub at: DateTime<Utc>,
    measured: Instant,
}

impl Observed {
    /// An observation outside any history, taken as it is.
    pub fn now(result: CheckResult) -> Self {
        let decision = Decisions::default().observe(&result);
        Self {
            result,
            decision,
            at: Utc::now(),
            measured: Instant::now(),
        }
    }

    pub fn age(&self) -> Duration {
        self.measured.elapsed()
    }
}

/// The latest result of every check, fed by every run (readiness, doctor, monitor), and each
/// check's decision: every observation, whoever made it, counts towards the thresholds.
#[derive(Default)]
pub struct LatestResults {
    inner: RwLock<HashMap<String, Arc<Observed>>>,
    decisions: std::sync::Mutex<Decisions>,
}

impl LatestResults {
    pub fn new(policy: DecisionPolicy) -> Self {
        Self {
            inner: RwLock::default(),
            decisions: std::sync::Mutex::new(Decisions::new(policy)),
        }
    }

    /// Records a run's results; returns each one's decision, in order, with the failures that
    /// another failing check explains marked.
    pub fn record(&self, results: &[CheckResult]) -> Vec<Decision> {
        let now = Instant::now();
        let at = Utc::now();
        // One lock for the decisions and the map, so observations count in the order recorded.
        let mut decisions = self
            .decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut decided: Vec<Decision> = results.iter().map(|r| decisions.observe(r)).collect();
        mark_consequences(results, &mut decided);
        if let Ok(mut map) = self.inner.write() {
            for (r, decision) in results.iter().zip(&decided) {
                map.insert(
                    r.name.clone(),
                    Arc::new(Observed {
                        result: r.clone(),
                        decision: decision.clone(),
                        at,
                        measured: now,
                    }),
                );
            }
        }
        decided
    }

    /// The latest result of a check; shared, so a probe storm does not copy results.
    pub fn get(&self, name: &str) -> Option<Arc<Observed>> {
        self.inner.read().ok()?.get(name).cloned()
    }
}
