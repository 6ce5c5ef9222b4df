//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol: open a page as a
//! phone or a desktop would, fill and submit a form, read the rendered DOM, take a screenshot.
//!
//! Only the handful of protocol commands the tests need, over one WebSocket to the page.
//! Chromium missing: [`Browser::launch`] says so and returns `None` locally, and panics in CI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A running headless Chromium with one page open.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(30);

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
}

impl Browser {
    /// Starts Chromium with a fresh profile; `None` (after saying so) where it is not installed.
    pub async fn launch() -> Option<Self> {
        let Some(binary) = chromium() else {
            if std::env::var_os("CI").is_some() {
                panic!("chromium is not installed: .ci/install/40-chromium.sh installs it in CI");
            }
            eprintln!("SKIPPED (chromium not installed): apt-get install chromium to run the status page in a browser");
            return None;
        };
        let profile = tempfile::tempdir().expect("a profile directory");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-sync",
                "--disable-component-update",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let port = devtools_port(profile.path()).await;
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("list DevTools targets")
            .json()
            .await
            .expect("DevTools targets as JSON");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(page)
            .await
            .expect("connect to the page");
        Some(Self {
            child,
            _profile: profile,
            socket,
            next_id: 0,
        })
    }

    /// Sends one command and returns its `result`; events in between are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .await
            .expect("send a DevTools command");
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer from chromium"))
                .expect("the DevTools socket closed")
                .expect("a DevTools frame");
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// A viewport of this size (`mobile`: a phone's, with touch and a narrow layout).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
    }

    /// Opens `url` and waits until the page has loaded and `ready` (an expression) is true.
    pub async fn open(&mut self, url: &str, ready: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(ready).await;
    }

    /// Waits until the document is complete and `condition` is true.
    pub async fn wait_for(&mut self, condition: &str) {
        let expression = format!("document.readyState === 'complete' && !!({condition})");
        let deadline = Instant::now() + STEP;
        while self.eval(&expression).await != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "the page never satisfied {condition}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The rendered DOM, as serialised HTML, and the text a person sees.
    pub async fn dom(&mut self) -> (String, String) {
        let html = self.eval("document.documentElement.outerHTML").await;
        let text = self.eval("document.body.innerText").await;
        (
            html.as_str().unwrap_or_default().to_owned(),
            text.as_str().unwrap_or_default().to_owned(),
        )
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The DevTools port Chromium writes to `DevToolsActivePort` in its profile once it listens.
async fn devtools_port(profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "chromium never opened its DevTools port"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where screenshots go: `target/status-page/` (a CI artifact).
pub fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("status-page")
}
