//! The one freshness policy: "reuse each check's latest result while it is younger than the
//! caller's limit, else re-run it", with single flight per check. Readiness and the gate both ask
//! here, so a storm of probes or gate calls with stale results costs one run of each stale check
//! (one call to a paid, rate-limited API), however many callers wait for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checks::Registry;
use tokio::sync::Mutex;

use crate::suite::{LatestResults, Observed};

pub struct Freshness {
    registry: Registry,
    latest: Arc<LatestResults>,
    /// One lock per check, held while that check re-runs: a caller that finds the check stale
    /// waits here, then finds the result the holder recorded.
    flights: HashMap<&'static str, Mutex<()>>,
    runs: AtomicU64,
}

impl Freshness {
    pub fn new(registry: Registry, latest: Arc<LatestResults>) -> Self {
        let flights = registry
            .names()
            .into_iter()
            .map(|name| (name, Mutex::new(())))
            .collect();
        Self {
            registry,
            latest,
            flights,
            runs: AtomicU64::new(0),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn latest(&self) -> &LatestResults {
        &self.latest
    }

    /// The latest result of each of `names` that is younger than `max_age(name)`, re-running
    /// the others, each under its own single flight (so a quick check never waits for a slow
    /// one). In registry order; names the registry does not know are left out.
    ///
    /// A re-run is a task of its own: a caller that gives up (a probe that times out) does not
    /// cancel it, and whoever asks next finds its result.
    pub async fn results(
        self: &Arc<Self>,
        names: &BTreeSet<String>,
        max_age: impl Fn(&str) -> Duration,
    ) -> Vec<Arc<Observed>> {
        let stale = self.stale(names, &max_age);
        let mut refreshing = tokio::task::JoinSet::new();
        for name in stale {
            let (this, limit) = (Arc::clone(self), max_age(name));
            refreshing.spawn(async move { this.refresh(name, limit).await });
        }
        while refreshing.join_next().await.is_some() {}
        self.registry
            .names()
            .into_iter()
            .filter(|n| names.contains(*n))
            .filter_map(|n| self.latest.get(n))
            .collect()
    }

    /// How many check runs this process made through here (probe-storm protection is measured
    /// by it).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn stale(
        &self,
        names: &BTreeSet<String>,
        max_age: &impl Fn(&str) -> Duration,
    ) -> Vec<&'static str> {
        self.registry
            .names()
            .into_iter()
            .filter(|n| names.contains(*n))
            .filter(|n| self.is_stale(n, max_age(n)))
            .collect()
    }

    fn is_stale(&self, name: &str, max_age: Duration) -> bool {
        self.latest.get(name).is_none_or(|o| o.age() >= max_age)
    }

    async fn refresh(&self, name: &'static str, max_age: Duration) {
        let Some(flight) = self.flights.get(name) else {
            return;
        };
        let _flying = flight.lock().await;
        // Whoever held the lock before us may have just recorded a fresh result.
        if !self.is_stale(name, max_age) {
            return;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let only = BTreeSet::from([name.to_owned()]);
        let run = self.registry.run(Some(&only)).await;
        self.latest.record(&run.results);
    }
}
