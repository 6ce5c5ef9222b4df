//! Delivery to one target: in order, one request per `NOTIFY_MIN_INTERVAL_MS` at most, retried
//! after a 429 (waiting its `Retry-After`), a 5xx or a network error with a doubling backoff,
//! never after another 4xx; settled in the outbox once it needs no further attempt.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outbox::{Delivery, Outbox, Target};
use super::targets::{request, Outgoing};
use crate::config::NotifyConfig;

/// What one attempt's answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A 4xx other than 429: sending it again would get the same answer.
    Refused,
    /// A 429: try again after this long (the answer's `Retry-After`, if it had one).
    Throttled(Option<Duration>),
    /// A 5xx, an unexpected answer or no answer: try again after a backoff.
    Failed,
}

/// Classifies an answer's status and `Retry-After` (seconds or an HTTP date).
pub fn classify(status: StatusCode, retry_after: Option<&str>) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Verdict::Throttled(retry_after.and_then(parse_retry_after))
    } else if status.is_client_error() {
        Verdict::Refused
    } else {
        Verdict::Failed
    }
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// One target's delivery loop. Feeds on `queue` until every sender is gone.
pub struct Courier {
    pub target: Target,
    pub config: Arc<NotifyConfig>,
    pub outbox: Arc<dyn Outbox>,
    pub client: reqwest::Client,
    /// Masks configured secrets in what an answer's body says, before it is logged.
    pub scrub: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl Courier {
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<Delivery>) {
        let mut next_send = Instant::now();
        while let Some(delivery) = queue.recv().await {
            self.deliver(&delivery, &mut next_send).await;
            let outbox = self.outbox.clone();
            let id = delivery.id.clone();
            match tokio::task::spawn_blocking(move || outbox.settle(&id)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(target_name = self.target.as_str(), delivery = %delivery.id, error = %err, "recording a settled notification failed; it may be sent again after a restart")
                }
                Err(err) => tracing::error!(error = %err, "the outbox task failed"),
            }
        }
    }

    /// Attempts until the delivery is delivered, refused or too old.
    async fn deliver(&self, delivery: &Delivery, next_send: &mut Instant) {
        let target = self.target.as_str();
        let mut backoff = self.config.retry_base;
        let mut attempt = 0u32;
        loop {
            let age = (chrono::Utc::now() - delivery.queued_at)
                .to_std()
                .unwrap_or_default();
            if age > self.config.give_up_after {
                tracing::error!(target_name = target, delivery = %delivery.id, attempts = attempt, "giving up on a notification: undelivered for longer than NOTIFY_GIVE_UP_AFTER_MS");
                return;
            }
            tokio::time::sleep_until(*next_send).await;
            *next_send = Instant::now() + self.config.min_interval;
            attempt += 1;
            let Some(outgoing) = request(&self.config, delivery, chrono::Utc::now().timestamp())
            else {
                tracing::warn!(target_name = target, delivery = %delivery.id, "target no longer configured; dropping its queued notification");
                return;
            };
            let wait = match self.send(outgoing).await {
                Ok((status, retry_after, body)) => match classify(status, retry_after.as_deref()) {
                    Verdict::Delivered => {
                        tracing::info!(target_name = target, delivery = %delivery.id, status = status.as_u16(), attempts = attempt, "notification delivered");
                        return;
                    }
                    Verdict::Refused => {
                        tracing::error!(target_name = target, delivery = %delivery.id, status = status.as_u16(), answer = %(self.scrub)(&body), "notification refused; not retrying a 4xx");
                        return;
                    }
                    Verdict::Throttled(after) => {
                        let wait = after.unwrap_or(backoff).min(self.config.retry_max);
                        tracing::warn!(target_name = target, delivery = %delivery.id, retry_in_ms = wait.as_millis() as u64, "rate limited by the target (429)");
                        wait
                    }
                    Verdict::Failed => {
                        tracing::warn!(target_name = target, delivery = %delivery.id, status = status.as_u16(), retry_in_ms = backoff.as_millis() as u64, "notification failed; retrying");
                        backoff
                    }
                },
                Err(err) => {
                    // reqwest's error names the URL, which may be the secret: only its kind is logged.
                    let kind = if err.is_timeout() {
                        "timed out"
                    } else if err.is_connect() {
                        "could not connect"
                    } else {
                        "transport error"
                    };
                    tracing::warn!(target_name = target, delivery = %delivery.id, error = kind, retry_in_ms = backoff.as_millis() as u64, "notification not sent; retrying");
                    backoff
                }
            };
            backoff = (backoff * 2).min(self.config.retry_max);
            let later = Instant::now() + wait;
            if later > *next_send {
                *next_send = later;
            }
        }
    }

    async fn send(
        &self,
        outgoing: Outgoing,
    ) -> Result<(StatusCode, Option<String>, String), reqwest::Error> {
        let mut request = self.client.post(&outgoing.url).body(outgoing.body);
        for (name, value) in outgoing.headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Ok((status, retry_after, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_slack_and_pagerduty_mean_them() {
        assert_eq!(classify(StatusCode::OK, None), Verdict::Delivered);
        assert_eq!(classify(StatusCode::ACCEPTED, None), Verdict::Delivered);
        assert_eq!(classify(StatusCode::BAD_REQUEST, None), Verdict::Refused);
        assert_eq!(classify(StatusCode::NOT_FOUND, None), Verdict::Refused);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("7")),
            Verdict::Throttled(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Thu, 01 Jan 1970 00:00:00 GMT")
            ),
            Verdict::Throttled(Some(Duration::ZERO))
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("soon")),
            Verdict::Throttled(None)
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, None), Verdict::Failed);
    }
}
