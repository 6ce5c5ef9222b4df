//! Outgoing notifications (Slack, a signed JSON webhook, PagerDuty) of incidents opened,
//! escalated and resolved, and of deploys finished.
//!
//! One emission point, off every request path: the notifier follows the incident timeline and
//! the finished deploys through their stores, so a transition counts once it is committed,
//! whoever made it (the doctor, the API, a deploy, another process). Each transition is queued
//! per target in the [`Outbox`] (fsynced, so a restart delivers it, keyed, so it is delivered
//! once), then handed to that target's [`deliver::Courier`]. Processes sharing a PostgreSQL
//! database elect one notifier between them (`leader.rs`).

pub mod deliver;
mod leader;
pub mod outbox;
pub mod targets;
pub mod transition;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use entity::EventType;
use tokio::sync::mpsc;

use self::deliver::Courier;
use self::leader::Leadership;
pub use self::outbox::{Delivery, FileOutbox, Outbox, Target};
pub use self::transition::{Kind, Transition};
use crate::config::{Config, NotifyConfig};
use crate::kernel::{now, Cursor};
use crate::store::{DeployStore, IncidentStore};
use crate::telemetry::scrub::Scrubber;

/// Each read of the feed starts this long before the newest transition seen, so that a
/// transaction that took its time before committing is still seen; the outbox's keys keep the
/// overlap from being queued twice.
const LOOKBACK: Duration = Duration::from_secs(60);
/// Rows read from the feed per query.
const PAGE: u64 = 500;

/// The timeline events that can be transitions.
const EVENT_TYPES: [EventType; 3] = [
    EventType::Detected,
    EventType::Escalated,
    EventType::Resolved,
];

/// The running notifier; dropping it stops it (its couriers with it) and releases the outbox.
pub struct Notifier {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the notifier if any target is configured.
pub fn spawn(config: &Config, incidents: IncidentStore, deploys: DeployStore) -> Option<Notifier> {
    let notify = Arc::new(config.notify.clone());
    if !notify.any_target() {
        return None;
    }
    let scrubber = Arc::new(Scrubber::new(&config.secrets()));
    let task = tokio::spawn(async move {
        let outbox = open_outbox(&notify).await;
        let scrub = Arc::new(move |text: &str| {
            String::from_utf8_lossy(&scrubber.scrub(text.as_bytes())).into_owned()
        });
        let client = reqwest::Client::builder()
            .timeout(notify.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsdoctor/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        // Dropped with this task, which aborts every courier.
        let mut couriers = tokio::task::JoinSet::new();
        let mut queues = HashMap::new();
        for (target, on) in [
            (Target::Slack, notify.slack.is_some()),
            (Target::Webhook, notify.webhook.is_some()),
            (Target::PagerDuty, notify.pagerduty.is_some()),
        ] {
            if !on {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let courier = Courier {
                target,
                config: notify.clone(),
                outbox: outbox.clone(),
                client: client.clone(),
                scrub: scrub.clone(),
            };
            couriers.spawn(courier.run(rx));
            queues.insert(target, tx);
        }
        let watcher = Watcher {
            incidents,
            deploys,
            outbox,
            queues,
            poll: notify.poll,
        };
        watcher.run().await;
    });
    Some(Notifier { task })
}

/// Opens the outbox, waiting while another process holds it (the old process of a restart on
/// the same host, still draining).
async fn open_outbox(notify: &NotifyConfig) -> Arc<dyn Outbox> {
    let mut logged = false;
    loop {
        let dir = notify.dir.clone();
        match tokio::task::spawn_blocking(move || FileOutbox::open(&dir)).await {
            Ok(Ok(outbox)) => return Arc::new(outbox),
            Ok(Err(err)) if !logged => {
                logged = true;
                tracing::error!(dir = %notify.dir.display(), error = %err, "cannot open the notification outbox yet; notifications wait until it opens");
            }
            _ => {}
        }
        tokio::time::sleep(notify.poll).await;
    }
}

/// Follows the feed and queues what it finds.
struct Watcher {
    incidents: IncidentStore,
    deploys: DeployStore,
    outbox: Arc<dyn Outbox>,
    queues: HashMap<Target, mpsc::UnboundedSender<Delivery>>,
    poll: Duration,
}

impl Watcher {
    async fn run(self) {
        let db = self.incidents.connection().clone();
        let mut leadership = Leadership::acquire(&db, self.poll).await;
        // What a previous run queued and did not settle goes first, in order.
        for delivery in self.outbox.pending() {
            self.hand_over(delivery);
        }
        // A first start notifies from now on, not the whole history.
        let mut cursor = self.outbox.cursor().unwrap_or_else(now);
        loop {
            if !leadership.held().await {
                tracing::warn!("the notification lock's connection closed; taking the lock again");
                leadership = Leadership::acquire(&db, self.poll).await;
            }
            match self.read_feed(cursor).await {
                Ok((transitions, newest)) => {
                    let newest = newest.max(cursor);
                    match self.queue(transitions, newest).await {
                        Ok(()) => cursor = newest,
                        Err(err) => {
                            tracing::error!(error = %err, "queuing notifications in the outbox failed; retrying")
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading incident transitions failed; retrying")
                }
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Transitions from `LOOKBACK` before `cursor` on, and the newest time seen.
    async fn read_feed(
        &self,
        cursor: NaiveDateTime,
    ) -> Result<(Vec<Transition>, NaiveDateTime), String> {
        let from = cursor - LOOKBACK;
        let mut newest = cursor;
        let mut found = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let rows = self
                .incidents
                .events_from(&EVENT_TYPES, from, after.as_ref(), PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let full = rows.len() as u64 == PAGE;
            for (event, incident) in &rows {
                newest = newest.max(event.created_at.at());
                if let Some(t) = incident
                    .as_ref()
                    .and_then(|i| Transition::from_event(event, i))
                {
                    found.push(t);
                }
            }
            let Some((last, _)) = rows.last() else { break };
            if !full {
                break;
            }
            after = Some(Cursor {
                created_at: last.created_at.at(),
                id: last.id.clone(),
            });
        }
        let deploys = self
            .deploys
            .finished_from(from, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        for row in &deploys {
            if let Some(at) = row.finished_at {
                newest = newest.max(at.at());
            }
            found.extend(Transition::from_deploy(row));
        }
        Ok((found, newest))
    }

    /// Records the deliveries durably, then hands the new ones to their couriers.
    async fn queue(
        &self,
        transitions: Vec<Transition>,
        cursor: NaiveDateTime,
    ) -> Result<(), String> {
        let deliveries: Vec<Delivery> = transitions
            .into_iter()
            .flat_map(|t| {
                self.queues
                    .keys()
                    .map(move |target| Delivery::new(*target, t.clone()))
            })
            .collect();
        let outbox = self.outbox.clone();
        let fresh = tokio::task::spawn_blocking(move || outbox.enqueue(deliveries, cursor))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for delivery in fresh {
            self.hand_over(delivery);
        }
        Ok(())
    }

    fn hand_over(&self, delivery: Delivery) {
        match self.queues.get(&delivery.target) {
            Some(queue) => {
                let _ = queue.send(delivery);
            }
            None => {
                // Queued for a target since unconfigured: settled without a request.
                let outbox = self.outbox.clone();
                tokio::task::spawn_blocking(move || outbox.settle(&delivery.id));
            }
        }
    }
}
