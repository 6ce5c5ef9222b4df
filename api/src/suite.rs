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
}

/// One check's latest result in this process.
#[derive(Debug, Clone)]
pub struct Observed {
    pub result: CheckResult,
    pub at: DateTime<Utc>,
    measured: Instant,
}

impl Observed {
    pub fn now(result: CheckResult) -> Self {
        Self {
            result,
            at: Utc::now(),
            measured: Instant::now(),
        }
    }

    pub fn age(&self) -> Duration {
        self.measured.elapsed()
    }
}

/// The latest result of every check, fed by every run (readiness, doctor, monitor).
#[derive(Default)]
pub struct LatestResults {
    inner: RwLock<HashMap<String, Arc<Observed>>>,
}

impl LatestResults {
    pub fn record(&self, results: &[CheckResult]) {
        let now = Instant::now();
        let at = Utc::now();
        if let Ok(mut map) = self.inner.write() {
            for r in results {
                map.insert(
                    r.name.clone(),
                    Arc::new(Observed {
                        result: r.clone(),
                        at,
                        measured: now,
                    }),
                );
            }
        }
    }

    /// The latest result of a check; shared, so a probe storm does not copy results.
    pub fn get(&self, name: &str) -> Option<Arc<Observed>> {
        self.inner.read().ok()?.get(name).cloned()
    }
}
