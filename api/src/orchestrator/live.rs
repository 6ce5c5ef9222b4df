//! What serves now: the live colour and release of an environment, and the pids of the processes
//! the plan started in the background, kept in the plan's state directory between deploys.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command::{alive, kill_group};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    pub fn port(self, tier: &super::plan::Tier) -> u16 {
        match self {
            Colour::Blue => tier.blue_port,
            Colour::Green => tier.green_port,
        }
    }
}

/// The live colour of an environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    pub colour: Colour,
    pub release: String,
    pub since: DateTime<Utc>,
    pub deploy_id: Option<String>,
}

impl Live {
    pub fn describe(&self) -> String {
        format!("{} ({})", self.colour.as_str(), self.release)
    }
}

fn live_path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.live.json"))
}

pub fn read_live(dir: &Path, env: &str) -> Option<Live> {
    serde_json::from_str(&std::fs::read_to_string(live_path(dir, env)).ok()?).ok()
}

/// Written atomically (a rename), so a crash never leaves half a file.
pub fn write_live(dir: &Path, env: &str, live: &Live) -> std::io::Result<()> {
    let path = live_path(dir, env);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(live).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

pub fn pid_path(dir: &Path, env: &str, tier: &str, colour: Colour) -> PathBuf {
    dir.join(format!("{env}-{tier}-{}.pid", colour.as_str()))
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Stops a background process group started by the plan: SIGTERM, then SIGKILL after `grace`.
pub async fn stop_pid(path: &Path, grace: std::time::Duration) -> Option<u32> {
    let pid = read_pid(path)?;
    let _ = std::fs::remove_file(path);
    if !alive(pid) {
        return None;
    }
    kill_group(pid, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while alive_not_zombie(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if alive_not_zombie(pid) {
        kill_group(pid, libc::SIGKILL);
    }
    Some(pid)
}

/// Alive and not a zombie waiting to be reaped.
fn alive_not_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}
