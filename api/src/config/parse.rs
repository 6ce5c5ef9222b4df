//! Reading one value: the variable lookup (trimmed, empty means unset, the declared default
//! otherwise) and the parsers whose errors name the variable and never repeat a secret.

use std::borrow::Cow;
use std::time::Duration;

use checks::mask::mask_url;

use super::settings::Setting;
use super::ConfigError;

/// Where values come from: the environment, a test's map, with command-line overrides in front.
pub struct Lookup<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The value as set, trimmed; an empty value counts as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value as set, else the declared default.
    pub fn value(&self, setting: &Setting) -> Option<String> {
        self.raw(setting.name)
            .or_else(|| setting.default.map(str::to_owned))
    }

    /// A number (`what` says which kind, for the error).
    pub fn num<T: std::str::FromStr>(
        &self,
        setting: &Setting,
        what: &str,
    ) -> Result<T, ConfigError> {
        parse_num(setting.name, self.value(setting), what)
    }

    /// A number that must be at least 1.
    pub fn positive<T: std::str::FromStr + PartialEq + From<u8>>(
        &self,
        setting: &Setting,
        what: &str,
    ) -> Result<T, ConfigError> {
        let n = self.num::<T>(setting, what)?;
        if n == T::from(0) {
            return Err(ConfigError::new(setting.name, "must be at least 1"));
        }
        Ok(n)
    }

    /// Whole milliseconds; zero allowed (it turns the behaviour off or makes it immediate).
    pub fn ms(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        parse_ms(setting.name, self.value(setting))
    }

    /// A duration written for people (`90s`, `5m`, `1h`); zero allowed.
    pub fn duration(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        let Some(v) = self.value(setting) else {
            return Err(ConfigError::new(
                setting.name,
                "is required: set it to a duration (e.g. 90s, 5m)",
            ));
        };
        humantime::parse_duration(&v).map_err(|_| {
            ConfigError::new(
                setting.name,
                format!("`{v}` is not a duration (e.g. 90s, 5m)"),
            )
        })
    }

    /// A timeout: like [`Self::ms`], but zero is refused (it would fail everything at once).
    pub fn timeout(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        nonzero(setting.name, self.ms(setting)?)
    }

    /// A timeout under a variable built at run time (`CHECK_TIMEOUT_MS_STRIPE`); `None` when unset.
    pub fn timeout_named(&self, var: String) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = self.raw(&var) else {
            return Ok(None);
        };
        let d = parse_ms(var.clone(), Some(value))?;
        nonzero(var, d).map(Some)
    }

    pub fn bool(&self, setting: &Setting) -> Result<bool, ConfigError> {
        let value = self.value(setting).map(|v| v.to_ascii_lowercase());
        match value.as_deref() {
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            None => Err(ConfigError::new(
                setting.name,
                "is required: set it to true or false",
            )),
            Some(other) => Err(ConfigError::new(
                setting.name,
                format!("`{other}` is not a boolean (true/false)"),
            )),
        }
    }

    /// An http(s) base URL without a trailing slash, or `None` when unset with no default.
    pub fn url(&self, setting: &Setting) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.value(setting) else {
            return Ok(None);
        };
        let var = setting.name;
        // Userinfo would be sent upstream as Basic auth and shown by HTTP libraries' logs; errors
        // show the URL masked, never its password.
        match url::Url::parse(&raw) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(ConfigError::new(
                var,
                "carries credentials (`user:password@`): remove them; base URLs must not hold secrets",
            )),
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(Some(raw.trim_end_matches('/').to_owned()))
            }
            Ok(_) => Err(ConfigError::new(
                var,
                format!("`{}` is not an http(s) URL", mask_url(&raw)),
            )),
            Err(_) => Err(ConfigError::new(
                var,
                "not an http(s) URL (e.g. https://api.example.com/v1)",
            )),
        }
    }
}

fn parse_num<T: std::str::FromStr>(
    var: impl Into<Cow<'static, str>>,
    value: Option<String>,
    what: &str,
) -> Result<T, ConfigError> {
    let var = var.into();
    let Some(v) = value else {
        return Err(ConfigError::new(
            var,
            format!("is required: set it to {what}"),
        ));
    };
    v.parse()
        .map_err(|_| ConfigError::new(var, format!("`{v}` is not {what}")))
}

fn parse_ms(
    var: impl Into<Cow<'static, str>>,
    value: Option<String>,
) -> Result<Duration, ConfigError> {
    parse_num::<u64>(var, value, "a whole number of milliseconds").map(Duration::from_millis)
}

fn nonzero(var: impl Into<Cow<'static, str>>, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(var, "must be greater than 0"));
    }
    Ok(d)
}

/// `DATABASE_URL` must be a SQLite or PostgreSQL URL with a host.
pub fn validate_database_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => Ok(()),
        Some("postgres") | Some("postgresql") => {
            let parsed = url::Url::parse(url).map_err(|e| {
                ConfigError::new(
                    var,
                    format!(
                        "not a valid URL ({e}); expected postgres://user:password@host:5432/db"
                    ),
                )
            })?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(var, "the PostgreSQL URL has no host"));
            }
            Ok(())
        }
        Some(other)
            if !other.is_empty()
                && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') =>
        {
            Err(ConfigError::new(
                var,
                format!("unsupported scheme `{other}`; use sqlite:// or postgres://"),
            ))
        }
        _ => Err(ConfigError::new(
            var,
            "not a URL; expected sqlite://path/to/file.db or postgres://user:password@host/db",
        )),
    }
}
