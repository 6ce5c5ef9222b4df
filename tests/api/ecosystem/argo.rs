//! The Argo Rollouts AnalysisTemplate in `docs/integrations.md`: its `successCondition` and
//! `failureCondition`, read from the document, evaluated against real `mode=verdict` bodies, as
//! Argo's analysis controller combines them (failure first; with both set and neither true, the
//! measurement is Inconclusive).

use reqwest::StatusCode;
use serde_json::Value;
use testkit::stripe::StripeMode;

use crate::helpers::{Backend, Stack, TestDb};
use crate::on_both_backends;

on_both_backends!(documented_conditions_decide_each_verdict);

/// `result.<path> == <JSON literal>`, the form the documented conditions take.
#[derive(Debug)]
struct Condition {
    path: Vec<String>,
    expected: Value,
}

impl Condition {
    fn parse(text: &str) -> Self {
        let (left, right) = text
            .split_once("==")
            .unwrap_or_else(|| panic!("`{text}` is not `result.<field> == <value>`"));
        let path = left
            .trim()
            .strip_prefix("result.")
            .unwrap_or_else(|| panic!("`{text}` does not start with result."))
            .split('.')
            .map(str::to_owned)
            .collect();
        let expected = serde_json::from_str(right.trim())
            .unwrap_or_else(|_| panic!("`{right}` is not a literal"));
        Self { path, expected }
    }

    fn holds(&self, result: &Value) -> bool {
        let mut at = result;
        for key in &self.path {
            at = &at[key.as_str()];
        }
        *at == self.expected
    }
}

/// The conditions of the AnalysisTemplate in the document.
fn documented() -> (Condition, Condition) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integrations.md"))
        .expect("docs/integrations.md");
    let field = |name: &str| {
        doc.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} not found in docs/integrations.md"))
            .trim()
            .to_owned()
    };
    (
        Condition::parse(&field("successCondition:")),
        Condition::parse(&field("failureCondition:")),
    )
}

fn phase(result: &Value) -> &'static str {
    let (success, failure) = documented();
    if failure.holds(result) {
        "Failed"
    } else if success.holds(result) {
        "Successful"
    } else {
        "Inconclusive"
    }
}

async fn documented_conditions_decide_each_verdict(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let stack = Stack::healthy().await;
    let app = stack.serve(&db, &[("REQUIRED_CHECKS", "database")]).await;
    let verdict = |query: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(&format!(
                    "/ops/gate?env=prod&release=v1&mode=verdict&max_age=0{query}"
                ))
                .await;
            // Argo counts any non-2xx as a measurement error: verdict mode is always 200.
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };

    let pass = verdict("").await;
    assert_eq!(pass["verdict"], "pass");
    assert_eq!(phase(&pass), "Successful", "{pass}");

    stack.stripe.set(StripeMode::InvalidKey);
    let partial = verdict("").await;
    assert_eq!(partial["verdict"], "partial");
    assert_eq!(phase(&partial), "Inconclusive", "{partial}");
    let allowed = verdict("&allow_partial=1").await;
    assert_eq!(phase(&allowed), "Successful", "{allowed}");

    let fail = verdict("&require=database,stripe").await;
    assert_eq!(fail["verdict"], "fail");
    assert_eq!(phase(&fail), "Failed", "{fail}");
}
