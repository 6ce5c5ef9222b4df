//! The status page's HTML: one server-rendered document, no script, readable on a phone, that
//! reloads itself. Every value is escaped by the template.

use checks::Status;
use chrono::{NaiveDateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::data::StatusData;

const STYLE: &str = "
*{box-sizing:border-box}
body{font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:52rem;margin:0 auto;padding:1rem}
h1{font-size:1.3rem;margin:.2rem 0 1rem}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
.banner{border-radius:.5rem;padding:1rem;font-size:1.25rem;font-weight:600;color:#fff}
.banner small{display:block;font-size:.85rem;font-weight:400;opacity:.9}
.pass{background:#1a7f37}.warn{background:#9a6700}.fail{background:#cf222e}.unknown{background:#57606a}
ul{list-style:none;margin:0;padding:0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:.5rem;padding:.75rem;margin:.5rem 0;overflow-wrap:anywhere}
.row{display:flex;flex-wrap:wrap;gap:.25rem .75rem;align-items:baseline}
.name{font-weight:600}
.pill{display:inline-block;border-radius:1rem;padding:0 .6rem;font-size:.85rem;color:#fff}
.muted{color:#57606a;font-size:.9rem}
.hint{margin:.35rem 0 0;padding:.4rem .6rem;background:#fff8c5;border-radius:.35rem}
ol{margin:.5rem 0 0;padding-left:1.1rem;font-size:.92rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
td,th{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #d0d7de;vertical-align:top}
form{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0}
input[type=password]{flex:1 1 12rem;font:inherit;padding:.45rem;border:1px solid #8c959f;border-radius:.35rem}
button{font:inherit;padding:.45rem .9rem;border-radius:.35rem;border:1px solid #1f2328;background:#fff}
.error{color:#cf222e;font-weight:600}
";

fn status_class(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Pass) => "pass",
        Some(Status::Warn) => "warn",
        Some(Status::Fail) => "fail",
        Some(Status::Skipped) | None => "unknown",
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "Operational",
        Status::Warn => "Degraded",
        Status::Fail => "Failing",
        Status::Skipped => "Not configured",
    }
}

fn overall_text(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Pass) => "All systems operational",
        Some(Status::Warn) => "Degraded: an optional component is failing",
        Some(Status::Fail) => "Outage: a required component is failing",
        Some(Status::Skipped) | None => "No check has run yet",
    }
}

fn at(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "3 min ago", "2 h ago", "5 d ago".
fn ago(t: &NaiveDateTime) -> String {
    let secs = (Utc::now().naive_utc() - *t).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=172_799 => format!("{} h ago", secs / 3_600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

fn page(title: &str, refresh_s: Option<u64>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh_s { meta http-equiv="refresh" content=(s); }
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

fn sign_in_form(error: Option<&str>) -> Markup {
    html! {
        form method="post" action="/status/login" {
            input type="password" name="token" autocomplete="current-password" placeholder="Admin token" aria-label="Admin token" required;
            button type="submit" { "Sign in for details" }
        }
        @if let Some(e) = error { p.error role="alert" { (e) } }
    }
}

/// The status page.
pub fn status(data: &StatusData, refresh_s: u64) -> Markup {
    let class = status_class(data.overall);
    let body = html! {
        h1 { "opsdoctor status" }
        section #overall .banner .(class) data-status=(class) {
            (overall_text(data.overall))
            @if let Some(t) = &data.checked_at {
                small { "Checked " (ago(&t.naive_utc())) " · reloads every " (refresh_s) " s" }
            }
        }
        @for p in &data.problems { p.error { (p) } }
        h2 { "Components" }
        ul #components {
            @for c in &data.components {
                li.card.component data-name=(c.name) data-status=(status_class(Some(c.status))) {
                    div.row {
                        span.name { (c.name) }
                        span.pill.(status_class(Some(c.status))) { (status_word(c.status)) }
                        @if c.required { span.muted { "required" } }
                        @if let Some(since) = &c.since {
                            span.muted { @if c.status == Status::Fail { "failing since " } @else { "fine since " } (at(since)) " (" (ago(since)) ")" }
                        }
                    }
                    @if let Some(reason) = &c.reason { div.muted { "Reason: " code { (reason) } } }
                    @if let Some(m) = &c.message { @if c.status != Status::Pass { div.message { (m) } } }
                    @if let Some(h) = &c.hint { p.hint { "What to do: " (h) } }
                }
            }
            @if data.components.is_empty() { li.card.muted { "No results yet." } }
        }
        h2 { "Open incidents (" (data.incidents.len()) ")" }
        ul #incidents {
            @for i in &data.incidents {
                li.card.incident data-severity=(i.severity) {
                    div.row {
                        span.name { (i.headline) }
                        span.pill.(if i.severity == "CRITICAL" { "fail" } else { "warn" }) { (i.severity) }
                        span.muted { (i.category) " · opened " (at(&i.opened_at)) " (" (ago(&i.opened_at)) ")" }
                    }
                    @if let Some(s) = &i.summary { div.summary { (s) } }
                    @if let Some(h) = &i.hint { p.hint { "What to do: " (h) } }
                    @if let Some(id) = &i.id { div.muted { "Incident " code { (id) } } }
                    @if !i.timeline.is_empty() {
                        ol.timeline {
                            @for (t, kind, message) in &i.timeline {
                                li { span.muted { (at(t)) " " } strong { (kind) } " " (message) }
                            }
                        }
                    }
                }
            }
            @if data.incidents.is_empty() { li.card.muted { "None." } }
        }
        @if data.full {
            h2 { "Last deploys" }
            table #deploys {
                tr { th { "Environment" } th { "Version" } th { "Outcome" } th { "Started" } th { "Finished" } }
                @for d in &data.deploys {
                    tr.deploy data-status=(d.status) {
                        td { (d.environment) } td { (d.version) }
                        td { (d.status) @if let Some(r) = &d.reason { div.muted { (r) } } }
                        td { (at(&d.started_at)) }
                        td { @if let Some(f) = &d.finished_at { (at(f)) } @else { "running" } }
                    }
                }
            }
            h2 { "Last gate verdicts" }
            table #verdicts {
                tr { th { "Environment" } th { "Release" } th { "Verdict" } th { "When" } }
                @for v in &data.verdicts {
                    tr.verdict data-verdict=(v.verdict) {
                        td { (v.environment) } td { (v.release) }
                        td { (v.verdict) div.muted { (v.summary) } }
                        td { (at(&v.at)) }
                    }
                }
            }
            form method="post" action="/status/logout" { button type="submit" { "Sign out" } }
        } @else {
            h2 { "Details" }
            p.muted { "Reasons, hints, timelines and deploys are shown to operators." }
            (sign_in_form(None))
        }
    };
    page("opsdoctor status", Some(refresh_s), body)
}

/// The page shown instead when the public view is off, or after a failed sign-in.
pub fn sign_in(error: Option<&str>) -> Markup {
    page(
        "opsdoctor status: sign in",
        None,
        html! {
            h1 { "opsdoctor status" }
            p { "Sign in with the admin token to see the status page." }
            (sign_in_form(error))
        },
    )
}
