//! The decision settings: thresholds (default and per check) and the transient re-try.

use std::time::Duration;

use checks::CheckName;

use super::parse::Lookup;
use super::settings as s;
use super::ConfigError;
use crate::decisions::{DecisionPolicy, Thresholds};

/// [`s::CHECK_FAIL_AFTER`] and its neighbours.
#[derive(Debug, Clone, Default)]
pub struct DecisionConfig {
    pub policy: DecisionPolicy,
    /// [`s::CHECK_RETRY_MAX_DELAY_MS`]; zero: no re-try.
    pub retry_max_delay: Duration,
}

/// The variable that sets one check's thresholds: `CHECK_THRESHOLDS_<NAME>`.
pub fn thresholds_var(name: CheckName) -> String {
    format!("CHECK_THRESHOLDS_{}", name.as_str().to_ascii_uppercase())
}

impl DecisionConfig {
    pub(super) fn from_lookup(
        env: &Lookup<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let default = Thresholds {
            fail_after: env.positive(&s::CHECK_FAIL_AFTER, "a whole number")?,
            fail_after_permanent: env.positive(&s::CHECK_FAIL_AFTER_PERMANENT, "a whole number")?,
            recover_after: env.positive(&s::CHECK_RECOVER_AFTER, "a whole number")?,
        };
        let mut policy = DecisionPolicy {
            default,
            ..DecisionPolicy::default()
        };
        for name in CheckName::ALL {
            let var = thresholds_var(name);
            if let Some(raw) = env.raw(&var) {
                policy.per_check.insert(name, parse_thresholds(&var, &raw)?);
            }
        }
        Ok(Self {
            policy,
            retry_max_delay: env.ms(&s::CHECK_RETRY_MAX_DELAY_MS)?,
        })
    }
}

fn parse_thresholds(var: &str, raw: &str) -> Result<Thresholds, ConfigError> {
    let bad = || {
        ConfigError::new(
            var.to_owned(),
            format!("`{raw}` is not three whole numbers of at least 1, as fail_after,fail_after_permanent,recover_after (e.g. 3,1,2)"),
        )
    };
    let parts: Vec<u32> = raw
        .split(',')
        .map(|p| p.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    match parts.as_slice() {
        [fail_after, fail_after_permanent, recover_after] => Ok(Thresholds {
            fail_after: *fail_after,
            fail_after_permanent: *fail_after_permanent,
            recover_after: *recover_after,
        }),
        _ => Err(bad()),
    }
}
