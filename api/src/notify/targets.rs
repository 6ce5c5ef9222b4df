//! What each target is sent: a Slack message, a signed JSON webhook, a PagerDuty alert or change
//! event. Pure functions of a transition and the target's settings, so they are tested without a
//! network.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::Sha256;

use super::outbox::{Delivery, Target};
use super::transition::{Kind, Transition};
use crate::config::NotifyConfig;

/// An HTTP request ready to send. `url` may be a secret: it is never logged.
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The header carrying the webhook's signature: `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Opsdoctor-Signature";
/// The header carrying the Unix time (seconds) the signature was made at.
pub const TIMESTAMP_HEADER: &str = "X-Opsdoctor-Timestamp";

/// PagerDuty's limits on `summary` and `dedup_key`.
const PD_SUMMARY_CHARS: usize = 1024;
const PD_DEDUP_KEY_CHARS: usize = 255;

/// The request for one delivery at Unix time `now`; `None` when its target is not configured
/// any more (the delivery is then settled without a request).
pub fn request(config: &NotifyConfig, delivery: &Delivery, now: i64) -> Option<Outgoing> {
    let t = &delivery.transition;
    let status_url = config.status_url.as_deref();
    match delivery.target {
        Target::Slack => {
            let slack = config.slack.as_ref()?;
            Some(json_request(
                slack.url.expose_secret().to_owned(),
                &slack_message(t, status_url),
            ))
        }
        Target::Webhook => {
            let hook = config.webhook.as_ref()?;
            let mut out = json_request(
                hook.url.expose_secret().to_owned(),
                &webhook_body(t, status_url),
            );
            let signature = sign(hook.secret.expose_secret(), now, &out.body);
            out.headers.extend([
                ("X-Opsdoctor-Event", t.kind.as_str().to_owned()),
                ("X-Opsdoctor-Delivery", t.key.clone()),
                (TIMESTAMP_HEADER, now.to_string()),
                (SIGNATURE_HEADER, signature),
            ]);
            Some(out)
        }
        Target::PagerDuty => {
            let pd = config.pagerduty.as_ref()?;
            let key = pd.routing_key.expose_secret();
            let (path, body) = if t.kind == Kind::DeployFinished {
                ("/v2/change/enqueue", pagerduty_change(t, key, status_url))
            } else {
                ("/v2/enqueue", pagerduty_alert(t, key, status_url))
            };
            Some(json_request(format!("{}{path}", pd.base), &body))
        }
    }
}

fn json_request(url: String, body: &Value) -> Outgoing {
    Outgoing {
        url,
        headers: vec![("Content-Type", "application/json".to_owned())],
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` (the notification and fallback) and `blocks`: the headline, then severity, component,
/// reason and hint as fields, then a link to the status page.
pub fn slack_message(t: &Transition, status_url: Option<&str>) -> Value {
    let headline = escape_slack(&t.headline());
    let mut fields: Vec<Value> = Vec::new();
    let mut field = |name: &str, value: &Option<String>| {
        if let Some(value) = value {
            fields.push(
                json!({ "type": "mrkdwn", "text": format!("*{name}*\n{}", escape_slack(value)) }),
            );
        }
    };
    if let Some(i) = &t.incident {
        field("Severity", &Some(i.severity.clone()));
        field(
            "Component",
            &i.component.clone().or(Some(i.category.clone())),
        );
        field("Reason", &i.reason);
        field("Hint", &i.hint);
        if t.kind != Kind::Opened {
            field("Update", &Some(i.message.clone()));
        }
    }
    if let Some(d) = &t.deploy {
        field("Environment", &Some(d.environment.clone()));
        field("Version", &Some(d.version.clone()));
        field("Outcome", &Some(d.status.clone()));
        field("Reason", &d.reason);
    }
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{headline}*") } }),
    ];
    if !fields.is_empty() {
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    let mut text = headline;
    if let Some(url) = status_url {
        let link = format!("<{url}|Open the status page>");
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": link }] }));
        text = format!("{text} {link}");
    }
    json!({ "text": text, "blocks": blocks })
}

/// The generic webhook's body: what happened, and the incident or deploy it happened to.
pub fn webhook_body(t: &Transition, status_url: Option<&str>) -> Value {
    json!({
        "id": t.key,
        "type": t.kind.as_str(),
        "occurredAt": t.at,
        "summary": t.headline(),
        "incident": t.incident,
        "deploy": t.deploy,
        "statusUrl": status_url,
    })
}

fn links(status_url: Option<&str>) -> Value {
    match status_url {
        Some(url) => json!([{ "href": url, "text": "opsdoctor status page" }]),
        None => json!([]),
    }
}

/// An Events API v2 alert: `trigger` when an incident opens or escalates (the escalation is
/// appended to the same alert, by its `dedup_key`), `resolve` when it resolves.
pub fn pagerduty_alert(t: &Transition, routing_key: &str, status_url: Option<&str>) -> Value {
    let Some(i) = &t.incident else {
        return json!({});
    };
    let dedup_key = cut(&i.fingerprint, PD_DEDUP_KEY_CHARS);
    if t.kind == Kind::Resolved {
        return json!({ "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key });
    }
    let severity = match i.severity.as_str() {
        "CRITICAL" => "critical",
        "WARN" => "warning",
        _ => "info",
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(&t.headline(), PD_SUMMARY_CHARS),
            "source": "opsdoctor",
            "severity": severity,
            "timestamp": t.at,
            "component": i.component.clone().unwrap_or_else(|| i.category.to_ascii_lowercase()),
            "group": i.category,
            "class": i.reason,
            "custom_details": {
                "incidentId": i.id,
                "hint": i.hint,
                "update": i.message,
                "openedAt": i.opened_at,
            },
        },
        "links": links(status_url),
    })
}

/// A change event for a finished deploy: shown next to incidents, never pages anyone.
pub fn pagerduty_change(t: &Transition, routing_key: &str, status_url: Option<&str>) -> Value {
    let Some(d) = &t.deploy else {
        return json!({});
    };
    json!({
        "routing_key": routing_key,
        "payload": {
            "summary": cut(&t.headline(), PD_SUMMARY_CHARS),
            "timestamp": t.at,
            "source": "opsdoctor",
            "custom_details": {
                "environment": d.environment,
                "version": d.version,
                "gitSha": d.git_sha,
                "outcome": d.status,
                "reason": d.reason,
                "startedAt": d.started_at,
                "incidentId": d.incident_id,
            },
        },
        "links": links(status_url),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::transition::IncidentFacts;

    fn opened() -> Transition {
        Transition {
            key: "incident:c1:opened".into(),
            kind: Kind::Opened,
            at: "2026-01-01T00:00:00.000Z".into(),
            incident: Some(IncidentFacts {
                id: "c1".into(),
                severity: "WARN".into(),
                category: "API".into(),
                summary: "openai check failing (timeout): <no answer> & more".into(),
                component: Some("openai".into()),
                reason: Some("timeout".into()),
                hint: Some("check egress".into()),
                fingerprint: "check:openai:timeout".into(),
                message: "first seen".into(),
                opened_at: "2026-01-01T00:00:00.000Z".into(),
            }),
            deploy: None,
        }
    }

    #[test]
    fn slack_escapes_control_characters_and_links_the_status_page() {
        let m = slack_message(&opened(), Some("https://ops.example.com/status"));
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("&lt;no answer&gt; &amp; more"), "{text}");
        assert!(text.ends_with("<https://ops.example.com/status|Open the status page>"));
        assert_eq!(m["blocks"][1]["fields"][3]["text"], "*Hint*\ncheck egress");
    }

    #[test]
    fn pagerduty_triggers_and_resolves_with_the_fingerprint() {
        let t = opened();
        let trigger = pagerduty_alert(&t, "R0UTING", None);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "check:openai:timeout");
        assert_eq!(trigger["payload"]["severity"], "warning");
        let resolved = Transition {
            kind: Kind::Resolved,
            ..t
        };
        let resolve = pagerduty_alert(&resolved, "R0UTING", None);
        assert_eq!(
            resolve,
            json!({ "routing_key": "R0UTING", "event_action": "resolve", "dedup_key": "check:openai:timeout" })
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // What `openssl dgst -sha256 -hmac 0123456789abcdef` prints for
        // `printf "%s" "1700000000.{}"` (the receiver side documented in docs/integrations.md).
        assert_eq!(
            sign("0123456789abcdef", 1_700_000_000, b"{}"),
            "sha256=e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e"
        );
    }
}
