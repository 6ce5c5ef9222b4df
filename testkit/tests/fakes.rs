//! The fakes answer like the real services: shapes, switching modes, transport failures.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Client;
use serde_json::Value;
use testkit::cloudflare::{CloudflareMode, TokenMode, TunnelStatus};
use testkit::cloudflared::MetricsMode;
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a reqwest client")
}

async fn get(url: &str, bearer: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .get(url)
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .send()
        .await
        .expect("the fake answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("a body");
    (status, headers, body)
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).expect("a JSON body")
}

/// True if `text` occurs in the error or any of its sources.
fn chain_mentions(error: &reqwest::Error, text: &str) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if format!("{e}").contains(text) || format!("{e:?}").contains(text) {
            return true;
        }
        cause = e.source();
    }
    false
}

#[tokio::test]
async fn openai_switches_modes_and_echoes_the_full_key() {
    let fake = testkit::openai::start(OpenAiMode::Ok).await;
    let url = format!("{}/v1/models", fake.base());
    let key = "sk-proj-SECRET0123456789abcdef";

    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 200);
    assert_eq!(parse(&body)["data"][0]["id"], "gpt-4o-mini");

    fake.set(OpenAiMode::InvalidKey);
    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 401);
    let error = &parse(&body)["error"];
    assert_eq!(error["code"], "invalid_api_key");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().is_some_and(|m| m.contains(key)));

    fake.set(OpenAiMode::QuotaExhausted);
    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 429);
    assert_eq!(parse(&body)["error"]["code"], "insufficient_quota");

    fake.set(OpenAiMode::RateLimited);
    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 429);
    assert_eq!(parse(&body)["error"]["code"], "rate_limit_exceeded");

    fake.set(OpenAiMode::ServerErrorJson(503));
    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#
    );

    fake.set(OpenAiMode::NotJson);
    let (status, _, body) = get(&url, key).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    assert_eq!(fake.hits(), 6);
    assert_eq!(fake.last_authorization(), Some(format!("Bearer {key}")));
}

#[tokio::test]
async fn stripe_answers_with_request_ids_livemode_and_html_errors() {
    let fake = testkit::stripe::start(StripeMode::Ok { livemode: true }).await;
    let key = "rk_live_SECRET0123456789";

    let (status, headers, body) = get(&format!("{}/v1/balance?", fake.base()), key).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("request-id"));
    let balance = parse(&body);
    assert_eq!(balance["object"], "balance");
    assert_eq!(balance["livemode"], true);

    fake.set(StripeMode::ExpiredKey);
    let (status, headers, body) = get(&format!("{}/v1/balance", fake.base()), key).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("request-id"));
    let error = &parse(&body)["error"];
    assert_eq!(error["code"], "api_key_expired");
    assert_eq!(
        error["message"].as_str(),
        Some(format!("Expired API Key provided: {key}").as_str())
    );

    fake.set(StripeMode::MissingPermission);
    let (status, _, body) = get(&format!("{}/v1/balance", fake.base()), key).await;
    assert_eq!(status, 403);
    assert!(body.contains(key) && body.contains("rak_balance_read"));

    fake.set(StripeMode::ServerErrorHtml(502));
    let (status, headers, _) = get(&format!("{}/v1/balance", fake.base()), key).await;
    assert_eq!(status, 502);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .is_ok_and(|v| v.starts_with("text/html")));
    assert!(headers.contains_key("request-id"));
}

#[tokio::test]
async fn cloudflare_account_owned_token_is_active_only_on_its_account_path() {
    let fake = testkit::cloudflare::start(CloudflareMode {
        token: TokenMode::AccountOwned {
            account_id: "acc123".to_owned(),
        },
        tunnel: TunnelStatus::Degraded,
    })
    .await;
    let api = format!("{}/client/v4", fake.base());
    let token = "cf-token-SECRET";

    let (status, _, body) = get(&format!("{api}/user/tokens/verify"), token).await;
    assert_eq!(status, 401);
    assert_eq!(parse(&body)["errors"][0]["code"], 1000);

    let (status, _, body) = get(&format!("{api}/accounts/acc123/tokens/verify"), token).await;
    assert_eq!(status, 200);
    let verified = parse(&body);
    assert_eq!(verified["success"], true);
    assert_eq!(verified["result"]["status"], "active");

    let (status, _, body) = get(&format!("{api}/accounts/other/tokens/verify"), token).await;
    assert_eq!(status, 404);
    assert_eq!(parse(&body)["success"], false);

    let (status, _, body) = get(&format!("{api}/accounts/acc123/cfd_tunnel/tun-1"), token).await;
    assert_eq!(status, 200);
    let tunnel = parse(&body);
    assert_eq!(tunnel["result"]["id"], "tun-1");
    assert_eq!(tunnel["result"]["name"], "prod");
    assert_eq!(tunnel["result"]["status"], "degraded");
    assert_eq!(fake.last_authorization(), Some(format!("Bearer {token}")));
}

#[tokio::test]
async fn cloudflare_token_states_and_errors() {
    let fake = testkit::cloudflare::start(CloudflareMode {
        token: TokenMode::Active {
            expires_on: Some("2030-01-01T00:00:00Z".to_owned()),
        },
        tunnel: TunnelStatus::Healthy,
    })
    .await;
    let verify = format!("{}/client/v4/user/tokens/verify", fake.base());

    let (status, _, body) = get(&verify, "t").await;
    assert_eq!(status, 200);
    assert_eq!(parse(&body)["result"]["expires_on"], "2030-01-01T00:00:00Z");

    fake.set(CloudflareMode {
        token: TokenMode::Expired,
        tunnel: TunnelStatus::Healthy,
    });
    let (status, _, body) = get(&verify, "t").await;
    assert_eq!(status, 200);
    assert_eq!(parse(&body)["result"]["status"], "expired");

    fake.set(CloudflareMode {
        token: TokenMode::MalformedHeader,
        tunnel: TunnelStatus::Healthy,
    });
    let (status, _, body) = get(&verify, "t").await;
    assert_eq!(status, 400);
    let error = &parse(&body)["errors"][0];
    assert_eq!(error["code"], 6003);
    assert_eq!(error["error_chain"][0]["code"], 6111);

    fake.set(CloudflareMode {
        token: TokenMode::RateLimited,
        tunnel: TunnelStatus::Healthy,
    });
    let (status, _, body) = get(&verify, "t").await;
    assert_eq!(status, 429);
    assert_eq!(parse(&body)["errors"][0]["code"], 971);
}

#[tokio::test]
async fn cloudflared_ready_has_no_content_type() {
    let fake = testkit::cloudflared::start(MetricsMode::Ready { connections: 4 }).await;

    let (status, headers, body) = get(&format!("{}/ready", fake.base()), "").await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key(CONTENT_TYPE), "{headers:?}");
    assert_eq!(parse(&body)["readyConnections"], 4);

    let (_, _, metrics) = get(&format!("{}/metrics", fake.base()), "").await;
    assert!(metrics.contains("\ncloudflared_tunnel_ha_connections 4\n"));

    fake.set(MetricsMode::NoConnections);
    let (status, headers, body) = get(&format!("{}/ready", fake.base()), "").await;
    assert_eq!(status, 503);
    assert!(!headers.contains_key(CONTENT_TYPE));
    let ready = parse(&body);
    assert_eq!(ready["status"], 503);
    assert_eq!(ready["readyConnections"], 0);

    let (status, _, body) = get(&format!("{}/healthcheck", fake.base()), "").await;
    assert_eq!((status, body.trim()), (200, "OK"));
}

#[tokio::test]
async fn hostname_pages_tell_not_routing_from_origin_down() {
    let fake = testkit::hostname::start(HostnameMode::NotRouting).await;

    let (status, _, body) = get(&format!("{}/any/path", fake.base()), "").await;
    assert_eq!(status, 530);
    assert!(body.contains("Error 1033") && body.contains("Cloudflare Tunnel error"));

    fake.set(HostnameMode::OriginUnreachable);
    let (status, headers, body) = get(&fake.base(), "").await;
    assert_eq!(status, 502);
    assert!(body.contains("Bad gateway") && body.contains("Error code 502"));
    assert_eq!(headers["server"], "cloudflare");

    fake.set(HostnameMode::Ok);
    let (status, _, _) = get(&fake.base(), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn transport_failures_look_like_the_real_ones() {
    let error = client()
        .get(testkit::refused_url())
        .send()
        .await
        .expect_err("nothing listens");
    assert!(error.is_connect(), "{error:?}");
    assert!(chain_mentions(&error, "ConnectionRefused"), "{error:?}");

    let error = client()
        .get(testkit::unresolvable_url())
        .send()
        .await
        .expect_err("the host does not resolve");
    assert!(error.is_connect(), "{error:?}");

    let fake = testkit::openai::start(OpenAiMode::Ok).await;
    let error = client()
        .get(format!("{}/v1/models", testkit::tls_mismatch_url(&fake)))
        .send()
        .await
        .expect_err("a plain-HTTP server cannot complete a TLS handshake");
    assert!(error.is_connect(), "{error:?}");
    assert!(chain_mentions(&error, "InvalidContentType"), "{error:?}");
}

#[tokio::test]
async fn slow_answers_outlast_a_short_client_timeout() {
    let fake = testkit::stripe::start(StripeMode::Slow(Duration::from_secs(3))).await;
    let error = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("a reqwest client")
        .get(format!("{}/v1/balance", fake.base()))
        .send()
        .await
        .expect_err("the answer comes too late");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn dropping_a_fake_stops_it() {
    let fake = testkit::hostname::start(HostnameMode::Ok).await;
    let addr = fake.addr();
    let pooled = client();
    let first = pooled
        .get(fake.base())
        .send()
        .await
        .expect("the fake answers");
    assert_eq!(first.status(), 200);
    drop(first);
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = pooled
        .get(format!("http://{addr}"))
        .send()
        .await
        .expect_err("a kept-alive connection is closed too");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections after the fake was dropped");
}
