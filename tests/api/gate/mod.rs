//! The gate of record end to end: verdicts and status codes, Argo's verdict mode, Flagger's
//! webhook, deploy records and their incidents, stored verdicts, `opsdoctor gate`, and the
//! documented examples run as written.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{decode, ApiClient};

mod cli;
mod deploys;
mod examples;
mod records;
mod verdicts;

pub async fn gate(app: &ApiClient, query: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = app
        .request(reqwest::Method::GET, &format!("/ops/gate?{query}"))
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let (status, body) = decode(resp).await;
    (status, headers, body)
}

pub fn sources(body: &Value) -> Vec<&str> {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect()
}

/// The stored verdicts of one environment, as listed (the listing flushes the writer first).
pub async fn listed_ids(app: &ApiClient, env: &str) -> Vec<String> {
    let (status, page) = app
        .get(&format!("/ops/gate/evaluations?env={env}&limit=500"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["gateId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}
