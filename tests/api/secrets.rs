//! No secret leaves the process: distinctive secrets are planted in every secret setting, every
//! endpoint and failure path is driven (with upstreams that echo the key back), and every
//! response, log line, CLI output and stored row is searched for any long piece of them.

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;
use testkit::cloudflare::{CloudflareMode, TokenMode, TunnelStatus};
use testkit::cloudflared::MetricsMode;
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;

use crate::helpers::{decode, run_cli, Backend, TestApp, TestDb};
use crate::helpers::{with, Stack};
use crate::on_both_backends;

on_both_backends!(
    planted_secrets_never_leave_the_process,
    an_echoed_key_never_reaches_the_log
);

/// (setting, value, length of the known prefix that masks may show)
const PLANTED: [(&str, &str, usize); 5] = [
    ("ADMIN_TOKEN", "adm-Zq8XwPLNT3vK7mR2tY9uB4nE", 0),
    ("OPENAI_API_KEY", "sk-proj-Qm7PLNTxZ4kR9vW2yT6uH3jB", 8),
    ("STRIPE_SECRET_KEY", "sk_test_Wx5PLNTqJ8mZ2vR7kT4yN9gC", 8),
    ("STRIPE_WEBHOOK_SECRET", "whsec_Hk3PLNTzQ6wX9mB2vR5tY8pL", 6),
    ("CLOUDFLARE_API_TOKEN", "Vb7PLNTnK2qZ9xW4mR6tY3uJ8hG5sD1", 0),
];
const DB_PASSWORD: &str = "Dp9PLNTwQ4zX7mK2vB5rT8yA";

/// Every 8-character window of the secret's own part (after its public prefix).
fn pieces(secret: &str, prefix: usize) -> Vec<String> {
    let own: Vec<char> = secret.chars().skip(prefix).collect();
    own.windows(8).map(|w| w.iter().collect()).collect()
}

fn assert_clean(what: &str, text: &str, secrets: &[(String, usize)]) {
    for (secret, prefix) in secrets {
        for piece in pieces(secret, *prefix) {
            assert!(
                !text.contains(&piece),
                "{what} leaks `{piece}` of a planted secret:\n{}",
                excerpt(text, &piece)
            );
        }
    }
}

fn excerpt(text: &str, piece: &str) -> String {
    let i = text.find(piece).unwrap_or(0);
    text.chars().skip(i.saturating_sub(200)).take(400).collect()
}

/// An environment with every secret setting planted, and the secrets to search for with the length
/// of their known prefix.
type Planted = (Vec<(String, String)>, Vec<(String, usize)>);

/// The stand-ins' environment with every secret setting planted.
fn planted(stack: &Stack, db: &TestDb, backend: Backend) -> Planted {
    let mut secrets: Vec<(String, usize)> = PLANTED
        .iter()
        .map(|(_, v, p)| ((*v).to_owned(), *p))
        .collect();
    let database_url = match backend {
        Backend::Postgres => {
            // Trust authentication ignores the password, so a planted one still connects.
            secrets.push((DB_PASSWORD.to_owned(), 0));
            db.url.replacen(
                "postgres://postgres@",
                &format!("postgres://postgres:{DB_PASSWORD}@"),
                1,
            )
        }
        Backend::Sqlite => db.url.clone(),
    };
    let mut env = stack.env();
    env.retain(|(k, _)| !PLANTED.iter().any(|(name, _, _)| name == k));
    env.extend(
        PLANTED
            .iter()
            .map(|(k, v, _)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.push(("DATABASE_URL".into(), database_url.clone()));
    env.push(("REQUIRED_CHECKS".into(), "database,stripe,openai".into()));
    (env, secrets)
}

async fn planted_secrets_never_leave_the_process(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let (env, secrets) = planted(&stack, &db, backend);
    let env_refs = with(&env, &[]);
    let admin = PLANTED[0].1;

    let app = TestApp::spawn_with(&db, &env_refs, &[]);
    let client = &app.client;
    let mut corpus = String::new();
    let get = |path: String, token: Option<&str>| {
        let req = client.get(format!("{}{path}", app.base));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            let headers = format!("{:?}", resp.headers());
            let (status, body) = decode(resp).await;
            format!("{path} {status} {headers} {body}\n")
        }
    };

    // Upstreams that fail in every way, echoing the presented key in their error bodies.
    let failing: [fn(&Stack); 5] = [
        |s| {
            s.openai.set(OpenAiMode::InvalidKey);
            s.stripe.set(StripeMode::InvalidKey);
            s.cloudflare.set(CloudflareMode {
                token: TokenMode::Forbidden,
                tunnel: TunnelStatus::Down,
            });
            s.cloudflared.set(MetricsMode::NoConnections);
            s.hostname.set(HostnameMode::NotRouting);
        },
        |s| {
            s.openai.set(OpenAiMode::QuotaExhausted);
            s.stripe.set(StripeMode::ExpiredKey);
            s.cloudflare.set(CloudflareMode {
                token: TokenMode::MalformedHeader,
                tunnel: TunnelStatus::Degraded,
            });
            s.hostname.set(HostnameMode::OriginUnreachable);
        },
        |s| {
            s.openai.set(OpenAiMode::ServerErrorHtml(502));
            s.stripe.set(StripeMode::MissingPermission);
            s.cloudflare.set(CloudflareMode {
                token: TokenMode::ServerError(500),
                tunnel: TunnelStatus::Inactive,
            });
        },
        |s| {
            s.openai.set(OpenAiMode::RateLimited);
            s.stripe.set(StripeMode::ServerErrorHtml(503));
            s.cloudflare.set(CloudflareMode {
                token: TokenMode::Expired,
                tunnel: TunnelStatus::Healthy,
            });
        },
        |s| {
            s.openai.set(OpenAiMode::Ok);
            s.stripe.set(StripeMode::Ok { livemode: true });
            s.cloudflare.set(CloudflareMode::default());
            s.cloudflared.set(MetricsMode::Ready { connections: 4 });
            s.hostname.set(HostnameMode::Ok);
        },
    ];
    for set in &failing {
        set(&stack);
        let (status, body) = app.post("/ops/doctor/run", json!({})).await;
        assert_eq!(status, StatusCode::OK);
        corpus.push_str(&body.to_string());
        for path in [
            "/ops/doctor",
            "/health/status",
            "/health/ready",
            "/health/db",
            "/health/live",
            "/version",
        ] {
            corpus.push_str(&get(path.to_owned(), Some(admin)).await);
            corpus.push_str(&get(path.to_owned(), None).await);
        }
    }
    for path in [
        "/ops/incidents?limit=500",
        "/ops/timeline?since=2000-01-01T00:00:00Z&limit=500",
        "/ops/incidents/stats",
    ] {
        corpus.push_str(&get(path.to_owned(), Some(admin)).await);
    }
    // The gate and deploy records, with failures that echo keys in the background.
    let (_, started) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": "v9", "externalIds": {"ci": "1"}}),
        )
        .await;
    let deploy_id = started["id"].as_str().unwrap().to_owned();
    corpus.push_str(&started.to_string());
    for query in [
        "env=prod&release=v9&max_age=0",
        "env=prod&release=v9&mode=verdict",
        "env=prod&release=v9&require=stripe",
    ] {
        corpus.push_str(&get(format!("/ops/gate?{query}"), Some(admin)).await);
    }
    let (_, flagger) = app
        .post(
            "/ops/gate",
            json!({"name": "web", "namespace": "prod", "phase": "Progressing", "checksum": "abc"}),
        )
        .await;
    corpus.push_str(&flagger.to_string());
    let (_, finished) = app
        .post(
            &format!("/ops/deploys/{deploy_id}/finish"),
            json!({"status": "failed", "reason": "bad"}),
        )
        .await;
    corpus.push_str(&finished.to_string());
    for path in [
        "/ops/gate/evaluations?limit=500".to_owned(),
        "/ops/deploys".to_owned(),
        format!("/ops/deploys/{deploy_id}"),
    ] {
        corpus.push_str(&get(path, Some(admin)).await);
    }
    for args in [
        vec![
            "gate",
            "--url",
            app.base.as_str(),
            "--env",
            "prod",
            "--release",
            "v9",
            "--timeout",
            "1s",
            "--interval",
            "200ms",
            "--format",
            "json",
        ],
        vec!["deploys", "--url", app.base.as_str(), "list"],
    ] {
        let (_, stdout, stderr) = run_cli(None, &[("OPSDOCTOR_TOKEN", admin)], &args);
        assert_clean(
            &format!("`opsdoctor {}`", args[0]),
            &format!("{stdout}{stderr}"),
            &secrets,
        );
    }
    let (_, listed) = app.get("/ops/incidents?limit=500").await;
    for incident in listed["items"].as_array().unwrap() {
        corpus.push_str(
            &get(
                format!("/ops/incidents/{}", incident["id"].as_str().unwrap()),
                Some(admin),
            )
            .await,
        );
    }
    // Failure paths of our own: wrong token, bad input, unknown routes.
    corpus.push_str(&get("/ops/doctor".into(), Some("adm-Zq8XwPLNT3vK7mR2tY9uB4nF")).await);
    corpus.push_str(&get("/ops/incidents?cursor=zzz".into(), Some(admin)).await);
    let (_, bad) = app
        .post("/ops/incidents", json!({"severity": "NOPE"}))
        .await;
    corpus.push_str(&bad.to_string());
    let (_, rate_limited) = app.post("/ops/doctor/run", json!({})).await;
    corpus.push_str(&rate_limited.to_string());
    assert_eq!(
        stack.stripe.last_authorization(),
        Some(format!("Bearer {}", PLANTED[2].1)),
        "the key did reach the upstream"
    );
    assert_eq!(
        stack.openai.last_authorization(),
        Some(format!("Bearer {}", PLANTED[1].1))
    );
    let leaky = format!("Invalid API Key provided: {}", PLANTED[2].1);
    assert!(
        std::panic::catch_unwind(|| assert_clean("self-test", &leaky, &secrets)).is_err(),
        "the search finds a leak"
    );
    assert_clean("HTTP responses", &corpus, &secrets);

    for args in [
        vec!["config"],
        vec!["config", "--json"],
        vec!["doctor"],
        vec!["doctor", "--json"],
        vec!["migrate", "status"],
    ] {
        let (_, stdout, stderr) = run_cli(Some(&db), &env_refs, &args);
        assert_clean(
            &format!("`opsdoctor {}`", args.join(" ")),
            &format!("{stdout}{stderr}"),
            &secrets,
        );
    }
    let (_, _, stderr) = run_cli(
        Some(&db),
        &with(&env, &[("PORT", "not-a-port")]),
        &["serve"],
    );
    assert_clean("a start-up error", &stderr, &secrets);

    // Verdicts are written in the background; reading them through the API waits for the writer,
    // so every verdict answered above is in the table scanned below.
    let (status, _) = app.get("/ops/gate/evaluations?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let conn = db.connect().await;
    let mut rows = String::new();
    for i in entity::ops_incident::Entity::find()
        .all(&conn)
        .await
        .unwrap()
    {
        rows.push_str(&format!("{i:?}\n"));
    }
    for e in entity::ops_incident_event::Entity::find()
        .all(&conn)
        .await
        .unwrap()
    {
        rows.push_str(&format!("{e:?}\n"));
    }
    for d in entity::ops_deploy::Entity::find().all(&conn).await.unwrap() {
        rows.push_str(&format!("{d:?}\n"));
    }
    let gates = entity::ops_gate_evaluation::Entity::find()
        .all(&conn)
        .await
        .unwrap();
    assert!(gates.len() >= 4, "the verdicts were stored");
    for g in gates {
        rows.push_str(&format!("{g:?}\n"));
    }
    let runs = entity::ops_doctor_run::Entity::find()
        .all(&conn)
        .await
        .unwrap();
    assert!(runs.len() >= failing.len(), "the runs were stored");
    for r in runs {
        rows.push_str(&format!("{r:?}\n"));
    }
    assert!(
        rows.contains("stripe") && rows.contains("auth"),
        "the rows hold the failures"
    );
    assert_clean("stored rows", &rows, &secrets);

    assert_clean("logs", &app.logs(), &secrets);
    drop(app);
    let logs = {
        let app = TestApp::spawn_with(&db, &with(&env, &[("RUST_LOG", "debug")]), &[]);
        let _ = app.post("/ops/doctor/run", json!({})).await;
        app.logs()
    };
    assert_clean("debug logs", &logs, &secrets);
}

/// A proxy in front of OpenAI answers 503 with an HTML page that echoes the presented key, and
/// async-openai logs such a body whole. At the default level, at debug and at trace, in text and
/// JSON, no planted secret reaches the log: the default filter keeps that library quiet and the
/// log scrubber masks whatever a raised level lets through.
async fn an_echoed_key_never_reaches_the_log(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    stack.openai.set(OpenAiMode::ServerErrorHtmlEcho(503));
    let (env, mut secrets) = planted(&stack, &db, backend);
    for format in ["text", "json"] {
        // Empty is unset: the default filter applies.
        for level in ["", "debug", "trace"] {
            let what = format!("{format} logs at RUST_LOG={level:?}");
            let app = TestApp::spawn_with(
                &db,
                &with(&env, &[("LOG_FORMAT", format), ("RUST_LOG", level)]),
                &[],
            );
            let (status, run) = app.post("/ops/doctor/run", json!({})).await;
            assert_eq!(status, StatusCode::OK, "{what}: {run}");
            assert!(
                run.to_string().contains("HTTP 503"),
                "{what}: the openai check met the echoing page: {run}"
            );
            let logs = app.stop();
            assert_clean(&what, &logs, &secrets);
            if !level.is_empty() {
                // The library did log the page, with the key masked in place.
                assert!(
                    logs.contains("Server error: 503") && logs.contains("Bearer sk-proj-…H3jB"),
                    "{what}: the echoed page was logged, masked:\n{logs}"
                );
            }
        }
    }
    assert_eq!(
        stack.openai.last_authorization(),
        Some(format!("Bearer {}", PLANTED[1].1)),
        "the key did reach the echoing upstream"
    );

    // A base URL with userinfo is refused at start-up, naming the variable, never the password.
    const URL_PASSWORD: &str = "Up4PLNTkW8zR2mX6vQ";
    secrets.push((URL_PASSWORD.to_owned(), 0));
    let url = stack
        .openai
        .base()
        .replacen("http://", &format!("http://user:{URL_PASSWORD}@"), 1);
    let (status, stdout, stderr) = run_cli(
        Some(&db),
        &with(&env, &[("OPENAI_BASE_URL", url.as_str())]),
        &["serve"],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("OPENAI_BASE_URL"), "{stderr}");
    assert_clean("a refused base URL", &format!("{stdout}{stderr}"), &secrets);
}
