//! `GET /status` in headless Chromium against a live instance with a failing check, an open
//! incident and a failed deploy: what a person must see in the public view on a phone and, after
//! signing in through the page's form, in the full view; no secret or planted value in either.
//! Screenshots go to `target/status-page/`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::openai::OpenAiMode;

use crate::helpers::browser::{artifact_dir, Browser};
use crate::helpers::{Backend, InProcessApp, Stack, TestDb, ADMIN_TOKEN, OPENAI_KEY};
use crate::on_both_backends;

/// Planted in a reported incident: a host the public must not see.
const PLANTED_HOST: &str = "db-primary.internal.example";
/// Planted in the same incident's details: a hint the public must not see.
const PLANTED_HINT: &str = "planted-hint: fail over to the replica";

on_both_backends!(the_status_page_shows_a_person_what_they_need_in_a_browser);

async fn the_status_page_shows_a_person_what_they_need_in_a_browser(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let stack = Stack::healthy().await;
    // The proxy's error page echoes the presented key: the check must mask it everywhere.
    stack.openai.set(OpenAiMode::ServerErrorHtmlEcho(502));
    let app = stack.serve(&db, &[("STATUS_PAGE_REFRESH_S", "45")]).await;

    let (status, run) = app.post("/ops/doctor/run", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let openai = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "openai")
        .unwrap()
        .clone();
    assert_eq!(openai["status"], "fail");
    let openai_hint = openai["hint"].as_str().unwrap().to_owned();
    let (status, reported) = app
        .post(
            "/ops/incidents",
            json!({
                "severity": "CRITICAL",
                "category": "DB",
                "summary": format!("replication lag on {PLANTED_HOST} (key {OPENAI_KEY})"),
                "detailsJson": { "hint": PLANTED_HINT, "host": PLANTED_HOST },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reported}");
    let reported_id = reported["incident"]["id"].as_str().unwrap().to_owned();
    let (status, deploy) = app
        .post(
            "/ops/deploys",
            json!({"environment": "prod", "version": "v7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{deploy}");
    let (status, _) = app.get("/ops/gate?env=prod&release=v7&mode=verdict").await;
    assert_eq!(status, StatusCode::OK);
    let (status, finished) = app
        .post(
            &format!("/ops/deploys/{}/finish", deploy["id"].as_str().unwrap()),
            json!({"status": "failed", "reason": "smoke tests failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    let shots = artifact_dir();
    let never = [
        ADMIN_TOKEN.to_owned(),
        OPENAI_KEY.to_owned(),
        stack.openai.addr().to_string(),
    ];

    // The public view, on a phone.
    browser.viewport(390, 844, true).await;
    let url = format!("{}/status", app.base);
    browser
        .open(&url, "document.querySelector('#overall')")
        .await;
    let (html, text) = browser.dom().await;
    assert!(html.contains(r#"<meta http-equiv="refresh" content="45">"#));
    assert!(
        text.contains("Degraded: an optional component is failing"),
        "{text}"
    );
    let component = |name: &str| {
        format!("document.querySelector('.component[data-name=\"{name}\"]').dataset.status")
    };
    assert_eq!(browser.eval(&component("database")).await, "pass");
    assert_eq!(browser.eval(&component("openai")).await, "fail");
    assert!(text.contains("openai is failing"), "{text}");
    assert!(text.contains("Database incident"), "{text}");
    assert!(
        text.contains("Open incidents (3)"),
        "the check, the report and the failed deploy: {text}"
    );
    assert!(text.contains("Deploy incident"), "{text}");
    assert!(text.contains("failing since"), "{text}");
    for hidden in [
        PLANTED_HOST,
        PLANTED_HINT,
        openai_hint.as_str(),
        reported_id.as_str(),
        "sk-proj-",
        "v7",
        "smoke tests failed",
    ]
    .iter()
    .copied()
    .chain(never.iter().map(String::as_str))
    {
        assert!(!html.contains(hidden), "the public view shows {hidden}");
    }
    let fits = browser
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, Value::Bool(true), "no sideways scrolling on a phone");
    browser
        .screenshot(&shots.join(format!("public-phone-{backend:?}.png")))
        .await;

    // Signing in through the form: the token goes in a POST body, never in the address.
    browser
        .eval(&format!(
            "document.querySelector('input[name=token]').value = '{ADMIN_TOKEN}'; \
             document.querySelector('form[action=\"/status/login\"]').submit(); true"
        ))
        .await;
    browser.wait_for("document.querySelector('#deploys')").await;
    assert_eq!(browser.eval("location.href").await, url.as_str());
    let (html, text) = browser.dom().await;
    assert!(
        text.contains(&openai_hint),
        "the full view shows hints: {text}"
    );
    assert!(
        text.contains(PLANTED_HINT),
        "an incident's hint in the full view: {text}"
    );
    assert!(
        text.contains(PLANTED_HOST),
        "hosts in the full view: {text}"
    );
    assert!(text.contains(&reported_id), "incident ids in the full view");
    assert!(
        text.contains("DETECTED"),
        "timelines in the full view: {text}"
    );
    assert_eq!(
        browser
            .eval("document.querySelector('tr.deploy').dataset.status")
            .await,
        "failed"
    );
    assert!(text.contains("smoke tests failed"), "{text}");
    assert!(browser
        .eval("document.querySelector('tr.verdict')")
        .await
        .is_object());
    assert!(text.contains("sk-proj-…"), "a key is shown masked: {text}");
    for secret in &never[..2] {
        assert!(
            !html.contains(secret.as_str()),
            "the full view shows {secret}"
        );
    }
    browser
        .screenshot(&shots.join(format!("full-phone-{backend:?}.png")))
        .await;
    browser.viewport(1200, 900, false).await;
    browser
        .screenshot(&shots.join(format!("full-desktop-{backend:?}.png")))
        .await;

    // Signing out ends the full view.
    browser
        .eval("document.querySelector('form[action=\"/status/logout\"]').submit(); true")
        .await;
    browser
        .wait_for("!document.querySelector('#deploys') && document.querySelector('#overall')")
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_bad_input_and_a_token_in_the_address_grants_nothing() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = InProcessApp::spawn(&db).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/status", app.base);

    let page = client
        .get(format!("{url}?token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    let body = page.text().await.unwrap();
    assert!(
        !body.contains("id=\"deploys\""),
        "a token in the URL is ignored"
    );
    assert!(body.contains("Sign in for details"));

    let form = |body: &'static str, accept: &'static str| {
        client
            .post(format!("{url}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", accept)
            .body(body)
    };
    let missing = form("", "application/json").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["field"], "token", "{error}");
    let wrong = form("token=not-the-admin-token-at-all", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("That is not the admin token."));

    let right = client
        .post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(ADMIN_TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_owned();
    let full = client
        .get(&url)
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        full.contains("id=\"deploys\""),
        "the session cookie gives the full view"
    );
    let bearer = client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(bearer.contains("id=\"deploys\""));

    // The public view is rendered at most once per 2 s; an operator's view is always fresh.
    let public = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    // Past the first request's rendering, so that this one renders anew.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let before = public().await;
    let rendered = std::time::Instant::now();
    let (status, _) = app
        .post(
            "/ops/incidents",
            json!({"severity": "WARN", "category": "TUNNEL", "summary": "tunnel flapping"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let again = public().await;
    if rendered.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(before, again, "served from the public view's cache");
    }
    let operator = client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(operator.text().await.unwrap().contains("tunnel flapping"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(
        public().await.contains("Tunnel incident"),
        "rendered anew after 2 s"
    );
    app.stop().await;

    let private = InProcessApp::spawn_with(&db, &[("STATUS_PAGE_PUBLIC", "false")], &[]).await;
    let body = reqwest::get(format!("{}/status", private.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("Sign in with the admin token"));
    assert!(!body.contains("id=\"components\""));
    private.stop().await;
}
