//! The settings of the tunnel restart coordinator (`crate::tunnel_restart`), declared here and
//! listed in [`super::settings::SETTINGS`] as one block.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::parse::Lookup;
use super::settings::{plain, Setting};
use super::{Config, ConfigError};

fn human(d: Duration) -> serde_json::Value {
    json!(humantime::format_duration(d).to_string())
}

pub static TUNNEL_RESTART_COMMAND: Setting = plain("TUNNEL_RESTART_COMMAND", None, "the command that restarts cloudflared (e.g. `systemctl restart cloudflared`), for `opsdoctor tunnel restart`, recovery and deploys without a plan command; split like a shell line but run without a shell (write `sh -c '…'` for one); keep credentials out of it. Unset: restarts are refused as not configured", |c| json!({ "configured": c.tunnel.command.is_some(), "program": c.tunnel.command.as_ref().map(|s| s.program()) }));
pub static TUNNEL_RESTART_TIMEOUT: Setting = plain(
    "TUNNEL_RESTART_TIMEOUT",
    Some("2m"),
    "the restart command is killed (with its process group) after this long",
    |c| human(c.tunnel.timeout),
);
pub static TUNNEL_RESTART_WAIT: Setting = plain("TUNNEL_RESTART_WAIT", Some("1m"), "after the command, the restart lock is held until the `tunnel` check sees edge connections again, or this long", |c| human(c.tunnel.wait));
pub static TUNNEL_RESTART_MIN_INTERVAL: Setting = plain("TUNNEL_RESTART_MIN_INTERVAL", Some("5m"), "at least this long between two tunnel restarts, whoever asks, counted from the shared record of restarts (every host's, on PostgreSQL)", |c| human(c.tunnel.min_interval));
pub static TUNNEL_RESTARTS_PER_HOUR: Setting = plain(
    "TUNNEL_RESTARTS_PER_HOUR",
    Some("3"),
    "at most this many tunnel restarts in any hour",
    |c| json!(c.tunnel.per_hour),
);
pub static TUNNEL_RESTART_DIR: Setting = plain("TUNNEL_RESTART_DIR", None, "this host's restart lock (`tunnel-restart.lock`, with its holder) and record of restarts (`tunnel-restarts.json`); every opsdoctor process on a host must share it. Unset: `tunnel/` beside the SQLite file, else `data/tunnel`", |c| json!(c.tunnel_restart_dir().display().to_string()));

/// The coordinator's settings.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// [`TUNNEL_RESTART_COMMAND`], with [`TUNNEL_RESTART_TIMEOUT`]; `None`: not configured.
    pub command: Option<crate::command::CommandSpec>,
    /// [`TUNNEL_RESTART_TIMEOUT`].
    pub timeout: Duration,
    /// [`TUNNEL_RESTART_WAIT`].
    pub wait: Duration,
    /// [`TUNNEL_RESTART_MIN_INTERVAL`].
    pub min_interval: Duration,
    /// [`TUNNEL_RESTARTS_PER_HOUR`].
    pub per_hour: u32,
    /// [`TUNNEL_RESTART_DIR`]; `None`: decided by [`Config::tunnel_restart_dir`].
    pub dir: Option<PathBuf>,
}

impl TunnelConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let timeout = env.duration(&TUNNEL_RESTART_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(ConfigError::new(
                TUNNEL_RESTART_TIMEOUT.name,
                "must be greater than 0",
            ));
        }
        let command = match env.value(&TUNNEL_RESTART_COMMAND) {
            None => None,
            Some(run) => {
                let spec = crate::command::CommandSpec {
                    run,
                    shell: false,
                    timeout,
                    background: false,
                    env: Default::default(),
                };
                spec.validate()
                    .map_err(|problem| ConfigError::new(TUNNEL_RESTART_COMMAND.name, problem))?;
                Some(spec)
            }
        };
        Ok(Self {
            command,
            timeout,
            wait: env.duration(&TUNNEL_RESTART_WAIT)?,
            min_interval: env.duration(&TUNNEL_RESTART_MIN_INTERVAL)?,
            per_hour: env.positive(&TUNNEL_RESTARTS_PER_HOUR, "a whole number")?,
            dir: env.value(&TUNNEL_RESTART_DIR).map(PathBuf::from),
        })
    }
}

impl Config {
    /// Where the restart lock and this host's record of restarts live: [`TUNNEL_RESTART_DIR`],
    /// else `tunnel/` beside the SQLite file, else `data/tunnel` (so every process on a host that
    /// shares a configuration shares the lock).
    pub fn tunnel_restart_dir(&self) -> PathBuf {
        if let Some(dir) = &self.tunnel.dir {
            return dir.clone();
        }
        match self.sqlite_dir() {
            Some(dir) => dir.join("tunnel"),
            None => PathBuf::from("data/tunnel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn durations_are_written_for_people_and_bad_values_name_their_variable() {
        let c = config(&[
            ("TUNNEL_RESTART_COMMAND", "systemctl restart 'cloudflared'"),
            ("TUNNEL_RESTART_MIN_INTERVAL", "90s"),
            ("TUNNEL_RESTART_WAIT", "2m 30s"),
        ])
        .unwrap();
        let command = c.tunnel.command.as_ref().expect("configured");
        assert_eq!(
            command.argv(&Default::default()),
            ["systemctl", "restart", "cloudflared"],
            "split like a shell line, run without one"
        );
        assert_eq!(command.timeout, Duration::from_secs(120));
        assert_eq!(c.tunnel.min_interval, Duration::from_secs(90));
        assert_eq!(c.tunnel.wait, Duration::from_secs(150));
        assert_eq!(c.masked()["TUNNEL_RESTART_COMMAND"]["program"], "systemctl");
        for (var, value) in [
            ("TUNNEL_RESTART_MIN_INTERVAL", "five minutes"),
            ("TUNNEL_RESTARTS_PER_HOUR", "0"),
            ("TUNNEL_RESTART_TIMEOUT", "0s"),
            ("TUNNEL_RESTART_COMMAND", "systemctl 'restart"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn the_directory_is_beside_the_sqlite_file_unless_set() {
        let sqlite = config(&[("DATABASE_URL", "sqlite:///srv/ops/opsdoctor.db")]).unwrap();
        assert_eq!(
            sqlite.tunnel_restart_dir(),
            PathBuf::from("/srv/ops/tunnel")
        );
        let pg = config(&[("DATABASE_URL", "postgres://u@db:5432/ops")]).unwrap();
        assert_eq!(pg.tunnel_restart_dir(), PathBuf::from("data/tunnel"));
        let set = config(&[("TUNNEL_RESTART_DIR", "/run/opsdoctor")]).unwrap();
        assert_eq!(set.tunnel_restart_dir(), PathBuf::from("/run/opsdoctor"));
    }
}
