//! An HTTP client bound to one running service, with the admin token; both harnesses hand it out.

use reqwest::StatusCode;
use serde_json::Value;

/// The base URL of a running service and the token its `/ops` requests carry.
pub struct ApiClient {
    pub base: String,
    pub client: reqwest::Client,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base: String, token: Option<String>) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
            token,
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .authed(self.client.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("GET");
        decode(resp).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .authed(self.client.post(format!("{}{path}", self.base)))
            .json(&body)
            .send()
            .await
            .expect("POST");
        decode(resp).await
    }

    /// A raw request with the admin token, for bad-input tests.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.client.request(method, format!("{}{path}", self.base)))
    }
}

/// The token a harness's client carries: `ADMIN_TOKEN` from the pairs, else the default; an empty
/// value means the service has none, so the client sends none.
pub fn token_from(env: &[(&str, &str)]) -> Option<String> {
    env.iter()
        .find(|(k, _)| *k == "ADMIN_TOKEN")
        .map(|(_, v)| (*v).to_owned())
        .or_else(|| Some(super::ADMIN_TOKEN.to_owned()))
        .filter(|t| !t.is_empty())
}

pub async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}
