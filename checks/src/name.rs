//! The closed set of check names: one enum, so a new check is a new variant that every `match`
//! on names must handle, never a string that falls into a catch-all.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A check of the suite. Variants are declared in the order results are reported; on the wire and
/// in settings a name is its lowercase string (`openai`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    Database,
    Tunnel,
    Openai,
    Stripe,
    Cloudflare,
}

impl CheckName {
    /// Every check, in the order results are reported.
    pub const ALL: [CheckName; 5] = [
        CheckName::Database,
        CheckName::Tunnel,
        CheckName::Openai,
        CheckName::Stripe,
        CheckName::Cloudflare,
    ];

    /// The name as shown in JSON, the CLI and settings.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckName::Database => "database",
            CheckName::Tunnel => "tunnel",
            CheckName::Openai => "openai",
            CheckName::Stripe => "stripe",
            CheckName::Cloudflare => "cloudflare",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`CheckName::ALL`]; its message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCheck {
    /// The name as given.
    pub name: String,
}

impl fmt::Display for UnknownCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown check `{}`; known checks are ", self.name)?;
        for (i, name) in CheckName::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownCheck {}

impl FromStr for CheckName {
    type Err = UnknownCheck;

    /// Exact lowercase names only; callers that accept user input trim and lowercase it first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownCheck { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_display_and_serde() {
        for name in CheckName::ALL {
            assert_eq!(name.as_str().parse::<CheckName>(), Ok(name));
            assert_eq!(name.to_string(), name.as_str());
            let json = serde_json::to_string(&name).unwrap();
            assert_eq!(json, format!("\"{}\"", name.as_str()));
            assert_eq!(serde_json::from_str::<CheckName>(&json).unwrap(), name);
        }
        assert_eq!(CheckName::Openai.as_str(), "openai");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = "redis".parse::<CheckName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown check `redis`; known checks are database, tunnel, openai, stripe, cloudflare"
        );
        assert!("Database".parse::<CheckName>().is_err());
    }

    #[test]
    fn order_is_the_report_order() {
        let mut sorted = CheckName::ALL;
        sorted.sort();
        assert_eq!(sorted, CheckName::ALL);
    }
}
