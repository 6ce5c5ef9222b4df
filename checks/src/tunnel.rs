//! The `tunnel` check: cloudflared's process and edge connections, the public hostname's routing,
//! and (when configured) Cloudflare's own view of the tunnel.

use futures::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{failure_for, join, status_failure, transport_reason};
use crate::registry::Check;
use crate::{CheckName, CheckResult, Reason, Status};

pub const NAME: &str = CheckName::Tunnel.as_str();

/// Cloudflare's API view of one tunnel.
#[derive(Clone)]
pub struct TunnelApi {
    /// `CLOUDFLARE_API_BASE`, e.g. `https://api.cloudflare.com/client/v4`.
    pub api_base: String,
    pub account_id: String,
    pub tunnel_id: String,
    pub token: SecretString,
}

/// What the tunnel check can probe; each part is optional.
#[derive(Clone, Default)]
pub struct TunnelSettings {
    /// `CLOUDFLARED_METRICS_URL`: cloudflared's metrics server (`/ready`).
    pub metrics_url: Option<String>,
    /// `BASE_URL`: the public URL served through the tunnel.
    pub public_url: Option<String>,
    /// From `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_TUNNEL_ID` and `CLOUDFLARE_API_TOKEN`.
    pub api: Option<TunnelApi>,
}

pub struct TunnelCheck {
    settings: TunnelSettings,
    client: reqwest::Client,
}

impl TunnelCheck {
    pub fn new(settings: TunnelSettings, client: reqwest::Client) -> Self {
        Self { settings, client }
    }

    /// The public host name, for display.
    pub fn hostname(&self) -> Option<String> {
        let url = url::Url::parse(self.settings.public_url.as_deref()?).ok()?;
        url.host_str().map(str::to_owned)
    }

    async fn check(&self) -> CheckResult {
        let (metrics, public, api) =
            futures::join!(self.probe_metrics(), self.probe_public(), self.probe_api());
        let mut observed = serde_json::Map::new();
        let mut failures = Vec::new();
        let mut warning = None;
        let mut verified = Vec::new();
        for probe in [metrics, public, api].into_iter().flatten() {
            match probe {
                Probe::Ok(what, values) => {
                    observed.extend(values);
                    verified.push(what);
                }
                Probe::Warn(result) => {
                    observed.extend(result.observed.clone());
                    warning.get_or_insert(result);
                }
                Probe::Fail(result) => {
                    observed.extend(result.observed.clone());
                    failures.push(result);
                }
            }
        }
        if let Some(host) = self.hostname() {
            observed.insert("hostname".into(), host.into());
        }
        // The root cause first: with cloudflared down, the hostname's 530 and Cloudflare's
        // "down" are its consequences, listed in `failing_reasons` and reported as one failure.
        failures.sort_by_key(|r| r.reason.map_or(usize::MAX, root_rank));
        if failures.len() > 1 {
            let reasons: Vec<&str> = failures
                .iter()
                .filter_map(|r| r.reason.map(Reason::as_str))
                .collect();
            observed.insert("failing_reasons".into(), reasons.into());
        }
        let mut result = match (failures.into_iter().next(), warning) {
            (Some(first), _) => first,
            (None, Some(warn)) => warn,
            // Says what was probed, and nothing more.
            (None, None) => CheckResult::pass(NAME, verified.join("; ")),
        };
        result.observed = observed;
        result
    }

    /// cloudflared's `/ready`: refused means not running; 503 / 0 connections means no edge.
    async fn probe_metrics(&self) -> Option<Probe> {
        let base = self.settings.metrics_url.as_deref()?;
        let what = "cloudflared metrics server";
        let response = match self.client.get(join(base, "/ready")).send().await {
            Ok(r) => r,
            Err(err) => {
                let reason = transport_reason(&err);
                if reason == Reason::ConnectionRefused {
                    return Some(Probe::Fail(CheckResult::fail(
                        NAME,
                        Reason::ProcessDown,
                        "cloudflared is not running (its metrics port refuses connections)",
                        "start cloudflared (`systemctl start cloudflared` or your supervisor), and check CLOUDFLARED_METRICS_URL matches its --metrics address",
                    )));
                }
                return Some(Probe::Fail(failure_for(NAME, what, reason)));
            }
        };
        let status = response.status();
        let body: Option<ReadyBody> = response
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let connections = body.as_ref().and_then(|b| b.ready_connections);
        let mut values = serde_json::Map::new();
        if let Some(n) = connections {
            values.insert("ready_connections".into(), n.into());
        }
        if let Some(id) = body.as_ref().and_then(|b| b.connector_id.clone()) {
            values.insert("connector_id".into(), id.into());
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || connections == Some(0) {
            let mut result = CheckResult::fail(
                NAME,
                Reason::NoConnections,
                "cloudflared is running but holds no connection to Cloudflare's edge",
                "check outbound access to Cloudflare (port 7844), the tunnel credentials, and cloudflared's log; restart it if it is stuck",
            );
            result.observed = values;
            return Some(Probe::Fail(result));
        }
        if !status.is_success() || connections.is_none() {
            return Some(Probe::Fail(
                CheckResult::fail(
                    NAME,
                    Reason::BadResponse,
                    format!(
                        "cloudflared's /ready answered HTTP {} without a connection count",
                        status.as_u16()
                    ),
                    "check that CLOUDFLARED_METRICS_URL points at cloudflared's metrics server",
                )
                .observe("http_status", status.as_u16()),
            ));
        }
        let n = connections.unwrap_or_default();
        Some(Probe::Ok(
            format!("cloudflared is running with {n} edge connection(s)"),
            values,
        ))
    }

    /// The public hostname: 530/1033 means not routing, 502 means the origin is unreachable.
    async fn probe_public(&self) -> Option<Probe> {
        let url = self.settings.public_url.as_deref()?;
        let what = "the public hostname";
        let response = match self.client.get(url).send().await {
            Ok(r) => r,
            Err(err) => return Some(Probe::Fail(failure_for(NAME, what, transport_reason(&err)))),
        };
        let status = response.status();
        let code = status.as_u16();
        let body = response.text().await.unwrap_or_default();
        let mut values = serde_json::Map::new();
        values.insert("public_http_status".into(), code.into());
        let error_1033 = body.contains("Error 1033")
            || body.contains("error code: 1033")
            || body.contains("\"error_code\":1033");
        let result = if code == 530 || (code != 502 && status.is_server_error() && error_1033) {
            CheckResult::fail(
                NAME,
                Reason::NotRouting,
                "the public hostname is not routed to a connected tunnel (Cloudflare 530 / error 1033)",
                "check that cloudflared runs with this tunnel's credentials and that the hostname's DNS record points at the tunnel",
            )
        } else if code == 502 {
            CheckResult::fail(
                NAME,
                Reason::OriginUnreachable,
                "the tunnel is up but cloudflared cannot reach the origin (HTTP 502)",
                "start the web backend, or fix the ingress rule's service address in cloudflared's config",
            )
        } else if status.is_server_error() {
            status_failure(
                NAME,
                what,
                status,
                "the origin or Cloudflare answers with an error: check the backend's logs",
            )
        } else {
            return Some(Probe::Ok(
                format!("the public hostname answers HTTP {code} through the tunnel"),
                values,
            ));
        };
        let mut result = result;
        result.observed.extend(values);
        Some(Probe::Fail(result))
    }

    /// Cloudflare's tunnel status: healthy, degraded (warn), inactive or down (fail).
    async fn probe_api(&self) -> Option<Probe> {
        let api = self.settings.api.as_ref()?;
        let what = "the Cloudflare tunnel API";
        let url = join(
            &api.api_base,
            &format!("/accounts/{}/cfd_tunnel/{}", api.account_id, api.tunnel_id),
        );
        let response = match self
            .client
            .get(url)
            .bearer_auth(api.token.expose_secret())
            .send()
            .await
        {
            Ok(r) => r,
            Err(err) => return Some(Probe::Fail(failure_for(NAME, what, transport_reason(&err)))),
        };
        let status = response.status();
        if !status.is_success() {
            return Some(Probe::Fail(status_failure(
                NAME,
                what,
                status,
                "check CLOUDFLARE_API_TOKEN has Cloudflare Tunnel read permission and the account and tunnel ids",
            )));
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(tunnel_status) = body["result"]["status"].as_str().map(str::to_owned) else {
            return Some(Probe::Fail(CheckResult::fail(
                NAME,
                Reason::BadResponse,
                "the Cloudflare tunnel API answered without a tunnel status",
                "check CLOUDFLARE_API_BASE",
            )));
        };
        let mut values = serde_json::Map::new();
        values.insert(
            "cloudflare_tunnel_status".into(),
            tunnel_status.clone().into(),
        );
        let outcome = match tunnel_status.as_str() {
            "healthy" => {
                return Some(Probe::Ok(
                    "Cloudflare reports the tunnel healthy".to_owned(),
                    values,
                ))
            }
            "degraded" => Probe::Warn(CheckResult::warn(
                NAME,
                Reason::NoConnections,
                "Cloudflare reports the tunnel degraded (some connections are down)",
                "check cloudflared's log and host network; run more than one replica for redundancy",
            )),
            _ => Probe::Fail(CheckResult::fail(
                NAME,
                Reason::NoConnections,
                format!("Cloudflare reports the tunnel {tunnel_status}"),
                "start cloudflared with this tunnel's credentials and check its connectivity to Cloudflare",
            )),
        };
        Some(match outcome {
            Probe::Warn(mut r) => {
                r.observed.extend(values);
                Probe::Warn(r)
            }
            Probe::Fail(mut r) => {
                r.observed.extend(values);
                Probe::Fail(r)
            }
            ok => ok,
        })
    }
}

enum Probe {
    /// What was verified, in words, and the values seen.
    Ok(String, serde_json::Map<String, Value>),
    Warn(CheckResult),
    Fail(CheckResult),
}

/// Which failure is reported when several probes fail: the one nearest the root cause.
fn root_rank(reason: Reason) -> usize {
    [
        Reason::ProcessDown,
        Reason::NoConnections,
        Reason::NotRouting,
        Reason::OriginUnreachable,
    ]
    .iter()
    .position(|r| *r == reason)
    .unwrap_or(4)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadyBody {
    ready_connections: Option<u64>,
    connector_id: Option<String>,
}

impl Check for TunnelCheck {
    fn name(&self) -> CheckName {
        CheckName::Tunnel
    }

    fn configured(&self) -> bool {
        let s = &self.settings;
        s.metrics_url.is_some() || s.public_url.is_some() || s.api.is_some()
    }

    fn settings(&self) -> &'static str {
        "CLOUDFLARED_METRICS_URL and/or BASE_URL (and CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_TUNNEL_ID, CLOUDFLARE_API_TOKEN for Cloudflare's view)"
    }

    fn run(&self) -> BoxFuture<'_, CheckResult> {
        Box::pin(async move {
            let result = self.check().await;
            debug_assert!(result.status != Status::Skipped);
            result
        })
    }
}
