//! What other ecosystems' own tools say about the service: the OpenAPI document against the router
//! and schemathesis, the metrics against promtool, and the controllers' dialects (Flagger's
//! webhooks, Argo Rollouts' conditions).

mod argo;
mod flagger;
mod kubernetes;
mod metrics;
mod openapi;

use std::path::PathBuf;

/// The path of an external tool, or `None` after a visible skip; under `CI` a missing tool fails.
pub fn tool(name: &str, installed_by: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is not installed; CI installs it with {installed_by}");
        }
        eprintln!("SKIPPED: {name} is not installed (run {installed_by})");
    }
    found
}
