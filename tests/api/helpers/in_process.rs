//! The service in this test's process, bound on port 0: the harness for end-to-end flows. It is
//! built from the same variables and arguments as [`TestApp`](super::TestApp), so a test moves
//! between the two by changing one line.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::{token_from, ApiClient};
use super::{TestDb, ADMIN_TOKEN};

/// A running `api::Application` on the test's runtime. Dropping it asks it to stop; the runtime
/// ending with the test ends whatever is left.
pub struct InProcessApp {
    api: ApiClient,
    /// The separate metrics listener's address, when `METRICS_ADDR` is set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::ops::Deref for InProcessApp {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl InProcessApp {
    pub async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, &[], &[]).await
    }

    /// Builds the configuration from `env` over the child process's defaults (later pairs win),
    /// applies migrations unless `args` holds `--no-migrate`, binds port 0 and serves.
    pub async fn spawn_with(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut migrate = true;
        for arg in args {
            match *arg {
                "serve" => {}
                "--no-migrate" => migrate = false,
                other => panic!("the in-process harness does not take the argument {other}"),
            }
        }
        // Each test's spool in its own directory, as a child process gets in its working one.
        let spool = db.dir.path().join("spool").display().to_string();
        let mut pairs: Vec<(String, String)> = [
            ("DATABASE_URL", db.url.as_str()),
            ("PORT", "0"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("DOCTOR_INTERVAL_MS", "0"),
            ("SPOOL_DIR", spool.as_str()),
        ]
        .iter()
        .chain(env)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        pairs.reverse();
        let config = api::Config::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("configuration");
        let app = api::Application::build(config, migrate)
            .await
            .expect("build the application");
        let base = format!("http://{}", app.local_addr().expect("bound address"));
        let metrics_addr = app.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            api: ApiClient::new(base, token_from(env)),
            metrics_addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops as SIGTERM would (readiness off, drain, pool closed) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("server");
        }
    }
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
