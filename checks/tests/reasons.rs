//! Every reason a check can give, produced against local servers that answer like the real APIs.

use std::time::Duration;

use checks::cloudflare::{CloudflareCheck, CloudflareSettings};
use checks::http::probe_client;
use checks::openai::{OpenAiCheck, OpenAiSettings};
use checks::stripe::{StripeCheck, StripeSettings};
use checks::tunnel::{TunnelApi, TunnelCheck, TunnelSettings};
use checks::{with_timeout, Check, CheckResult, Reason, Status};
use secrecy::SecretString;
use testkit::cloudflare::{CloudflareMode, TokenMode, TunnelStatus};
use testkit::cloudflared::MetricsMode;
use testkit::hang_up::HangUp;
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;
use testkit::{refused_url, tls_mismatch_url, unresolvable_url};

const SHORT: Duration = Duration::from_millis(400);

async fn run(check: &dyn Check) -> CheckResult {
    with_timeout(check.name().as_str(), Duration::from_secs(2), check.run()).await
}

fn expect(result: &CheckResult, status: Status, reason: Option<Reason>) {
    assert_eq!(
        (result.status, result.reason),
        (status, reason),
        "{result:#?}"
    );
    if status != Status::Pass {
        assert!(
            result.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "a hint for a tired human: {result:#?}"
        );
    }
}

fn openai(base: String) -> OpenAiCheck {
    let settings = OpenAiSettings {
        api_base: base,
        api_key: SecretString::from("sk-proj-test0123456789abcdefghij"),
    };
    OpenAiCheck::new(Some(settings), probe_client(SHORT))
}

#[tokio::test]
async fn openai_reasons() {
    let fake = testkit::openai::start(OpenAiMode::Ok).await;
    let check = openai(format!("{}/v1", fake.base()));
    let ok = run(&check).await;
    expect(&ok, Status::Pass, None);
    assert_eq!(ok.observed["model_count"], 1);
    assert_eq!(
        fake.last_authorization().as_deref(),
        Some("Bearer sk-proj-test0123456789abcdefghij")
    );

    for (mode, status, reason) in [
        (OpenAiMode::InvalidKey, Status::Fail, Reason::Auth),
        (
            OpenAiMode::QuotaExhausted,
            Status::Fail,
            Reason::QuotaExhausted,
        ),
        (OpenAiMode::RateLimited, Status::Warn, Reason::RateLimited),
        (OpenAiMode::Forbidden, Status::Fail, Reason::Forbidden),
        (
            OpenAiMode::ServerErrorHtml(503),
            Status::Fail,
            Reason::UpstreamError,
        ),
        (
            OpenAiMode::ServerErrorJson(500),
            Status::Fail,
            Reason::UpstreamError,
        ),
        (OpenAiMode::NotJson, Status::Fail, Reason::BadResponse),
        (
            OpenAiMode::Slow(Duration::from_secs(3)),
            Status::Fail,
            Reason::Timeout,
        ),
    ] {
        fake.set(mode.clone());
        let hits = fake.hits();
        let result = run(&check).await;
        expect(&result, status, Some(reason));
        assert_eq!(
            fake.hits(),
            hits + 1,
            "{mode:?}: exactly one request, no retries"
        );
    }
    fake.set(OpenAiMode::ServerErrorHtml(503));
    assert_eq!(run(&check).await.observed["http_status"], 503);

    expect(
        &run(&openai(format!("{}/v1", refused_url()))).await,
        Status::Fail,
        Some(Reason::ConnectionRefused),
    );
    expect(
        &run(&openai(format!("{}/v1", unresolvable_url()))).await,
        Status::Fail,
        Some(Reason::Dns),
    );
    fake.set(OpenAiMode::Ok);
    expect(
        &run(&openai(format!("{}/v1", tls_mismatch_url(&fake)))).await,
        Status::Fail,
        Some(Reason::Tls),
    );
}

/// Answers shaped as OpenAI's specification allows, beyond its examples: more fields than the
/// check reads, and error pages that are not OpenAI's JSON, classified by their status.
#[tokio::test]
async fn openai_reads_only_what_it_needs_and_classifies_by_status_first() {
    let fake = testkit::openai::start(OpenAiMode::OkNewerApi).await;
    let check = openai(format!("{}/v1", fake.base()));
    let newer = run(&check).await;
    expect(&newer, Status::Pass, None);
    assert_eq!(newer.observed["model_count"], 3);

    for (code, status, reason) in [
        (403, Status::Fail, Reason::Forbidden),
        (401, Status::Fail, Reason::Auth),
        (429, Status::Warn, Reason::RateLimited),
        (404, Status::Fail, Reason::BadResponse),
    ] {
        fake.set(OpenAiMode::ServerErrorHtml(code));
        let hits = fake.hits();
        let result = run(&check).await;
        expect(&result, status, Some(reason));
        assert_eq!(result.observed["http_status"], code, "{result:#?}");
        assert_eq!(result.observed["body"], "not_openai_json", "{result:#?}");
        assert!(
            result.message.contains(&format!("HTTP {code}")),
            "{result:#?}"
        );
        assert_eq!(fake.hits(), hits + 1, "one request");
    }
    fake.set(OpenAiMode::NotJson);
    let not_json = run(&check).await;
    expect(&not_json, Status::Fail, Some(Reason::BadResponse));
    assert_eq!(not_json.observed["http_status"], 200);
}

fn stripe(base: String, key: &str, webhook: Option<&str>) -> StripeCheck {
    let settings = StripeSettings {
        api_base: base,
        secret_key: SecretString::from(key.to_owned()),
        webhook_secret: webhook.map(|w| SecretString::from(w.to_owned())),
    };
    StripeCheck::new(Some(settings), probe_client(SHORT))
}

const TEST_KEY: &str = "sk_test_51Hx0123456789abcdefJhB";
const WEBHOOK: &str = "whsec_0123456789abcdef0123456789";

#[tokio::test]
async fn stripe_reasons() {
    let fake = testkit::stripe::start(StripeMode::Ok { livemode: false }).await;
    let base = fake.base();
    let ok = run(&stripe(base.clone(), TEST_KEY, Some(WEBHOOK))).await;
    expect(&ok, Status::Pass, None);
    assert_eq!(
        (
            ok.observed["mode"].as_str(),
            ok.observed["livemode"].as_bool()
        ),
        (Some("test"), Some(false))
    );
    assert_eq!(ok.observed["key"], "sk_test_…fJhB");

    // A gateway serving the API under a path prefix: the whole base URL is honoured.
    let gateway = testkit::stripe::start(StripeMode::Under("/echo")).await;
    let behind = run(&stripe(
        format!("{}/echo", gateway.base()),
        TEST_KEY,
        Some(WEBHOOK),
    ))
    .await;
    expect(&behind, Status::Pass, None);
    assert_eq!(gateway.hits(), 1, "one request, to the prefixed path");

    let no_webhook = run(&stripe(base.clone(), TEST_KEY, None)).await;
    expect(&no_webhook, Status::Warn, Some(Reason::Misconfigured));
    expect(
        &run(&stripe(
            base.clone(),
            TEST_KEY,
            Some("sk_test_not_a_webhook_secret"),
        ))
        .await,
        Status::Fail,
        Some(Reason::Misconfigured),
    );

    let hits = fake.hits();
    expect(
        &run(&stripe(
            base.clone(),
            "pk_test_51Hx0123456789abcdef",
            Some(WEBHOOK),
        ))
        .await,
        Status::Fail,
        Some(Reason::Misconfigured),
    );
    expect(
        &run(&stripe(
            base.clone(),
            "hunter2-not-a-stripe-key",
            Some(WEBHOOK),
        ))
        .await,
        Status::Fail,
        Some(Reason::Misconfigured),
    );
    assert_eq!(
        fake.hits(),
        hits,
        "a wrong kind of key is refused without calling Stripe"
    );

    fake.set(StripeMode::Ok { livemode: true });
    let mismatch = run(&stripe(base.clone(), TEST_KEY, Some(WEBHOOK))).await;
    expect(&mismatch, Status::Fail, Some(Reason::Misconfigured));
    assert!(
        mismatch.message.contains("live mode"),
        "{}",
        mismatch.message
    );

    let check = stripe(base.clone(), TEST_KEY, Some(WEBHOOK));
    for (mode, status, reason) in [
        (StripeMode::InvalidKey, Status::Fail, Reason::Auth),
        (StripeMode::ExpiredKey, Status::Fail, Reason::Auth),
        (
            StripeMode::MissingPermission,
            Status::Fail,
            Reason::Forbidden,
        ),
        (StripeMode::RateLimited, Status::Warn, Reason::RateLimited),
        (
            StripeMode::ServerErrorHtml(503),
            Status::Fail,
            Reason::UpstreamError,
        ),
    ] {
        fake.set(mode.clone());
        expect(&run(&check).await, status, Some(reason));
    }
    fake.set(StripeMode::ExpiredKey);
    assert_eq!(run(&check).await.observed["key_status"], "expired");
    fake.set(StripeMode::ServerErrorHtml(503));
    assert_eq!(
        run(&check).await.observed["http_status"],
        503,
        "the status survives an HTML 5xx"
    );

    fake.set(StripeMode::Slow(Duration::from_secs(5)));
    let slow = with_timeout("stripe", SHORT, check.run()).await;
    expect(&slow, Status::Fail, Some(Reason::Timeout));

    expect(
        &run(&stripe(refused_url(), TEST_KEY, Some(WEBHOOK))).await,
        Status::Fail,
        Some(Reason::ConnectionRefused),
    );
    expect(
        &run(&stripe(unresolvable_url(), TEST_KEY, Some(WEBHOOK))).await,
        Status::Fail,
        Some(Reason::Dns),
    );
    fake.set(StripeMode::Ok { livemode: false });
    expect(
        &run(&stripe(tls_mismatch_url(&fake), TEST_KEY, Some(WEBHOOK))).await,
        Status::Fail,
        Some(Reason::Tls),
    );
}

/// A healthy Stripe account never fails on a field the check does not read, and an error in
/// Stripe's envelope is classified by its status, then its code, with one request.
#[tokio::test]
async fn stripe_reads_only_what_it_needs_and_classifies_by_status_first() {
    let fake = testkit::stripe::start(StripeMode::OkNewerApi { livemode: false }).await;
    let check = stripe(fake.base(), TEST_KEY, Some(WEBHOOK));
    let ok = run(&check).await;
    expect(&ok, Status::Pass, None);
    assert_eq!(fake.hits(), 1, "one request for a healthy answer");
    fake.set(StripeMode::OkNewerApi { livemode: true });
    expect(
        &run(&check).await,
        Status::Fail,
        Some(Reason::Misconfigured),
    );

    for (status, code, expected, reason) in [
        (429, "lock_timeout", Status::Warn, Reason::RateLimited),
        (401, "api_key_revoked_by_policy", Status::Fail, Reason::Auth),
        (403, "secret_key_required", Status::Fail, Reason::Forbidden),
        (
            503,
            "a_code_from_next_year",
            Status::Fail,
            Reason::UpstreamError,
        ),
        (
            400,
            "a_code_from_next_year",
            Status::Fail,
            Reason::BadResponse,
        ),
        (401, "api_key_expired", Status::Fail, Reason::Auth),
    ] {
        fake.set(StripeMode::ErrorCode { status, code });
        let hits = fake.hits();
        let result = run(&check).await;
        expect(&result, expected, Some(reason));
        assert_eq!(result.observed["http_status"], status, "{result:#?}");
        assert_eq!(result.observed["error_code"], code, "{result:#?}");
        assert_eq!(
            fake.hits(),
            hits + 1,
            "{code}: no second request for Stripe's own body"
        );
        assert!(!result.message.contains("not Stripe"), "{result:#?}");
    }
    assert_eq!(run(&check).await.observed["key_status"], "expired");

    // A body that is not Stripe's: the library loses the status, one plain request finds it.
    for (code, reason) in [
        (503, Reason::UpstreamError),
        (404, Reason::BadResponse),
        (401, Reason::Auth),
    ] {
        fake.set(StripeMode::ServerErrorHtml(code));
        let hits = fake.hits();
        let result = run(&check).await;
        expect(&result, Status::Fail, Some(reason));
        assert_eq!(result.observed["http_status"], code, "{result:#?}");
        assert_eq!(result.observed["body"], "not_stripe_json", "{result:#?}");
        assert_eq!(fake.hits(), hits + 2, "the one follow-up request");
    }
}

fn cloudflare(base: String, account: Option<&str>) -> CloudflareCheck {
    let settings = CloudflareSettings {
        api_base: base,
        token: SecretString::from("cf-token-0123456789abcdefghijklmnopqrstuv"),
        account_id: account.map(str::to_owned),
    };
    CloudflareCheck::new(Some(settings), probe_client(SHORT))
}

#[tokio::test]
async fn cloudflare_reasons() {
    let fake = testkit::cloudflare::start(CloudflareMode::default()).await;
    let base = format!("{}/client/v4", fake.base());
    let check = cloudflare(base.clone(), None);
    let ok = run(&check).await;
    expect(&ok, Status::Pass, None);
    assert_eq!(ok.observed["token_status"], "active");

    let soon = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339();
    let set = |token: TokenMode| {
        fake.set(CloudflareMode {
            token,
            tunnel: TunnelStatus::Healthy,
        })
    };
    set(TokenMode::Active {
        expires_on: Some(later.clone()),
    });
    let fine = run(&check).await;
    expect(&fine, Status::Pass, None);
    assert_eq!(fine.observed["expires_on"], later.as_str());
    set(TokenMode::Active {
        expires_on: Some(soon),
    });
    expect(
        &run(&check).await,
        Status::Warn,
        Some(Reason::TokenExpiring),
    );

    for (token, status, reason) in [
        (TokenMode::Disabled, Status::Fail, Reason::TokenDisabled),
        (TokenMode::Expired, Status::Fail, Reason::TokenExpired),
        (
            TokenMode::MalformedHeader,
            Status::Fail,
            Reason::Misconfigured,
        ),
        (TokenMode::Forbidden, Status::Fail, Reason::Forbidden),
        (TokenMode::RateLimited, Status::Warn, Reason::RateLimited),
        (
            TokenMode::ServerError(502),
            Status::Fail,
            Reason::UpstreamError,
        ),
        (
            TokenMode::AccountOwned {
                account_id: "acc123".into(),
            },
            Status::Fail,
            Reason::Auth,
        ),
        (
            TokenMode::Slow(Duration::from_secs(3)),
            Status::Fail,
            Reason::Timeout,
        ),
    ] {
        set(token.clone());
        expect(&run(&check).await, status, Some(reason));
    }

    // Cloudflare's `status` decides; an `expires_on` in the past on an active token warns and
    // says so.
    set(TokenMode::Active {
        expires_on: Some("2024-03-09T23:59:59Z".into()),
    });
    let past = run(&check).await;
    expect(&past, Status::Warn, Some(Reason::TokenExpiring));
    assert_eq!(past.observed["decided_by"], "expires_on");
    assert!(
        past.message.contains("active") && past.message.contains("expires_on"),
        "{past:#?}"
    );
    set(TokenMode::Expired);
    assert_eq!(run(&check).await.observed["decided_by"], "status");

    // Codes no check knows: the status decides.
    for (status, code, expected, reason) in [
        (429, 10429, Status::Warn, Reason::RateLimited),
        (401, 9106, Status::Fail, Reason::Auth),
        (403, 9109, Status::Fail, Reason::Forbidden),
        (400, 7777, Status::Fail, Reason::BadResponse),
        (503, 7777, Status::Fail, Reason::UpstreamError),
    ] {
        set(TokenMode::ApiError { status, code });
        let result = run(&check).await;
        expect(&result, expected, Some(reason));
        assert_eq!(result.observed["http_status"], status, "{result:#?}");
        assert_eq!(result.observed["error_codes"], serde_json::json!([code]));
    }

    set(TokenMode::AccountOwned {
        account_id: "acc123".into(),
    });
    let account = run(&cloudflare(base, Some("acc123"))).await;
    expect(&account, Status::Pass, None);
    assert_eq!(account.observed["token_kind"], "account");
}

/// A peer that takes the request and closes the connection without answering is `unreachable`
/// (not refused, DNS, TLS or a timeout), whichever HTTP client the check uses.
#[tokio::test]
async fn a_peer_that_hangs_up_mid_request_is_unreachable() {
    let peer = HangUp::start().await;
    let base = peer.base();
    let checks: [Box<dyn Check>; 3] = [
        Box::new(openai(format!("{base}/v1"))),
        Box::new(stripe(base.clone(), TEST_KEY, Some(WEBHOOK))),
        Box::new(cloudflare(format!("{base}/client/v4"), None)),
    ];
    for check in &checks {
        let hits = peer.hits();
        let result = run(check.as_ref()).await;
        expect(&result, Status::Fail, Some(Reason::Unreachable));
        assert!(
            peer.hits() > hits,
            "{}: the request reached the peer before it hung up",
            check.name()
        );
    }
}

fn tunnel(metrics: Option<String>, public: Option<String>, api: Option<TunnelApi>) -> TunnelCheck {
    TunnelCheck::new(
        TunnelSettings {
            metrics_url: metrics,
            public_url: public,
            api,
        },
        probe_client(SHORT),
    )
}

#[tokio::test]
async fn tunnel_reasons() {
    let metrics = testkit::cloudflared::start(MetricsMode::Ready { connections: 4 }).await;
    let host = testkit::hostname::start(HostnameMode::Ok).await;
    let cf = testkit::cloudflare::start(CloudflareMode::default()).await;
    let api = TunnelApi {
        api_base: format!("{}/client/v4", cf.base()),
        account_id: "acc123".into(),
        tunnel_id: "tun456".into(),
        token: SecretString::from("cf-token-0123456789abcdefghijklmnopqrstuv"),
    };
    let check = tunnel(
        Some(metrics.base()),
        Some(format!("{}/", host.base())),
        Some(api.clone()),
    );
    let ok = run(&check).await;
    expect(&ok, Status::Pass, None);
    assert_eq!(ok.observed["ready_connections"], 4);
    assert_eq!(ok.observed["cloudflare_tunnel_status"], "healthy");
    assert_eq!(ok.observed["hostname"], "127.0.0.1");

    expect(
        &run(&tunnel(Some(refused_url()), None, None)).await,
        Status::Fail,
        Some(Reason::ProcessDown),
    );
    metrics.set(MetricsMode::NoConnections);
    let none = run(&check).await;
    expect(&none, Status::Fail, Some(Reason::NoConnections));
    assert_eq!(none.observed["ready_connections"], 0);
    metrics.set(MetricsMode::Ready { connections: 2 });

    for (mode, reason) in [
        (HostnameMode::NotRouting, Reason::NotRouting),
        (HostnameMode::OriginUnreachable, Reason::OriginUnreachable),
        (HostnameMode::ServerError(503), Reason::UpstreamError),
    ] {
        host.set(mode);
        expect(&run(&check).await, Status::Fail, Some(reason));
    }
    host.set(HostnameMode::Ok);

    let status = |tunnel: TunnelStatus| {
        cf.set(CloudflareMode {
            token: TokenMode::Active { expires_on: None },
            tunnel,
        })
    };
    status(TunnelStatus::Degraded);
    expect(
        &run(&check).await,
        Status::Warn,
        Some(Reason::NoConnections),
    );
    status(TunnelStatus::Down);
    expect(
        &run(&check).await,
        Status::Fail,
        Some(Reason::NoConnections),
    );
    status(TunnelStatus::Healthy);

    // A pass says what was verified, and nothing more.
    let api_only = run(&tunnel(None, None, Some(api.clone()))).await;
    expect(&api_only, Status::Pass, None);
    assert_eq!(api_only.message, "Cloudflare reports the tunnel healthy");
    let all = run(&check).await;
    for part in [
        "cloudflared is running with 2 edge connection(s)",
        "the public hostname answers HTTP 200",
        "Cloudflare reports the tunnel healthy",
    ] {
        assert!(all.message.contains(part), "{all:#?}");
    }

    // cloudflared down: the hostname's 530 is its consequence, one failure with both listed.
    host.set(HostnameMode::NotRouting);
    status(TunnelStatus::Down);
    let down = run(&tunnel(
        Some(refused_url()),
        Some(format!("{}/", host.base())),
        Some(api.clone()),
    ))
    .await;
    expect(&down, Status::Fail, Some(Reason::ProcessDown));
    assert_eq!(
        down.observed["failing_reasons"],
        serde_json::json!(["process_down", "no_connections", "not_routing"])
    );
    host.set(HostnameMode::Ok);
    status(TunnelStatus::Healthy);

    expect(
        &run(&tunnel(None, Some(unresolvable_url()), None)).await,
        Status::Fail,
        Some(Reason::Dns),
    );
    expect(
        &run(&tunnel(None, Some(tls_mismatch_url(&host)), None)).await,
        Status::Fail,
        Some(Reason::Tls),
    );
    expect(
        &run(&tunnel(None, Some(refused_url()), None)).await,
        Status::Fail,
        Some(Reason::ConnectionRefused),
    );
}

#[tokio::test]
async fn database_reasons() {
    use sea_orm::{ConnectOptions, Database};
    let empty = Database::connect("sqlite::memory:").await.unwrap();
    let pending = checks::database::check(&empty, "sqlite::memory:").await;
    expect(&pending, Status::Fail, Some(Reason::MigrationsPending));
    assert_eq!(pending.observed["backend"], "sqlite");

    use migration::MigratorTrait;
    use sea_orm::ConnectionTrait;
    migration::Migrator::up(&empty, None).await.unwrap();
    expect(
        &checks::database::check(&empty, "sqlite::memory:").await,
        Status::Pass,
        None,
    );
    empty
        .execute_unprepared(r#"DROP TABLE "OpsDoctorRun""#)
        .await
        .unwrap();
    let missing = checks::database::check(&empty, "sqlite::memory:").await;
    expect(&missing, Status::Fail, Some(Reason::MissingTables));
    assert_eq!(
        missing.observed["missing_tables"],
        serde_json::json!(["OpsDoctorRun"])
    );

    // The pool retries a refused connection until its acquire timeout (here longer than the
    // check's, as by default): the check must still say "refused", not "timeout".
    let server = refused_url().trim_start_matches("http://").to_owned();
    let mut options = ConnectOptions::new(format!("postgres://u:p@{server}/db"));
    options
        .connect_lazy(true)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5));
    let down = Database::connect(options).await.unwrap();
    let check = checks::database::DatabaseCheck::new(down, "postgres://u:****@127.0.0.1/db".into())
        .server(Some(server));
    let started = std::time::Instant::now();
    let refused = with_timeout("database", Duration::from_secs(2), check.run()).await;
    expect(&refused, Status::Fail, Some(Reason::ConnectionRefused));
    assert!(started.elapsed() < Duration::from_secs(1), "{refused:#?}");
}

#[tokio::test]
async fn a_refused_write_fails_the_database_check_until_a_write_commits() {
    use checks::write_health::WriteHealth;
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Database, DbErr, RuntimeErr};

    let db = Database::connect("sqlite::memory:").await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    let writes = WriteHealth::default();
    let check = checks::database::DatabaseCheck::new(db.clone(), "sqlite::memory:".into())
        .write_health(writes.clone());
    expect(&check.run().await, Status::Pass, None);

    // A client's mistake (a constraint) is not the storage's: the check still passes.
    let constraint = db
        .execute_unprepared(r#"INSERT INTO "OpsIncidentEvent" ("id", "incidentId", "createdAt", "eventType", "message", "metadataJson") VALUES ('e', 'missing', '2026-01-01 00:00:00', 'DETECTED', 'm', '{}')"#)
        .await;
    assert!(constraint.is_err());
    writes.observe(&constraint);
    expect(&check.run().await, Status::Pass, None);

    // The storage refusing a write (what SQLite says on a read-only file) fails it.
    let readonly = Database::connect("sqlite::memory:?mode=ro").await.unwrap();
    let refused: Result<_, DbErr> = readonly
        .execute_unprepared("CREATE TABLE t (x INTEGER)")
        .await;
    assert!(
        matches!(&refused, Err(DbErr::Exec(RuntimeErr::SqlxError(_)))),
        "{refused:?}"
    );
    writes.observe(&refused);
    let failed = check.run().await;
    expect(&failed, Status::Fail, Some(Reason::WriteFailed));
    assert_eq!(failed.observed["write_error_code"], "SQLITE_READONLY");

    // The next write that commits clears it.
    writes.observe(&db.execute_unprepared("SELECT 1").await);
    expect(&check.run().await, Status::Pass, None);
}
