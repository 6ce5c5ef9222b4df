//! Masking of secrets for display: a known prefix and at most the last four characters survive.

use url::Url;

/// Masks a secret as `<known prefix>…<last four>`, or `****` when it is too short to show any of it.
///
/// Only the last four characters are kept, and only when the secret is at least 16 characters long,
/// so that no meaningful part of it is revealed.
pub fn mask_secret(secret: &str, known_prefixes: &[&str]) -> String {
    let prefix = known_prefixes
        .iter()
        .copied()
        .filter(|p| secret.starts_with(p))
        .max_by_key(|p| p.len())
        .unwrap_or("");
    let rest = &secret[prefix.len()..];
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 16 {
        return format!("{prefix}****");
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

/// Masks the password (and any `password=` query value) of a database URL.
///
/// `postgres://user:secret@host:5432/db` becomes `postgres://user:****@host:5432/db`; a string that
/// is not a URL is replaced entirely, since it cannot be shown safely.
pub fn mask_database_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        return "<unparseable database URL>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = matches!(
                k.to_ascii_lowercase().as_str(),
                "password" | "pass" | "pwd" | "sslpassword"
            );
            (
                k.into_owned(),
                if secret {
                    "****".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string().replace("%2A%2A%2A%2A", "****")
}

/// Masks a URL's password and every query value, which may carry credentials (`?key=…`).
pub fn mask_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        return "<unparseable URL>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    if !keys.is_empty() {
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "****")));
    }
    url.to_string().replace("%2A%2A%2A%2A", "****")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_prefix_and_last_four() {
        assert_eq!(
            mask_secret("sk_live_51HxYzAbCdEfGhIjKlf3Qx", &["sk_live_", "sk_test_"]),
            "sk_live_…f3Qx"
        );
        assert_eq!(mask_secret("short", &[]), "****");
        assert_eq!(mask_secret("sk_test_short", &["sk_test_"]), "sk_test_****");
    }

    #[test]
    fn urls_lose_passwords_and_query_values() {
        assert_eq!(
            mask_url("https://u:pw123456@api.example.com/v1?key=abc&x=1"),
            "https://u:****@api.example.com/v1?key=****&x=****"
        );
        assert_eq!(
            mask_url("https://api.openai.com/v1"),
            "https://api.openai.com/v1"
        );
    }

    #[test]
    fn database_passwords_never_survive() {
        let masked = mask_database_url(
            "postgres://app:hunter2secret@db.internal:5432/prod?password=other&sslmode=require",
        );
        assert_eq!(
            masked,
            "postgres://app:****@db.internal:5432/prod?password=****&sslmode=require"
        );
        assert_eq!(
            mask_database_url("sqlite://data/opsdoctor.db?mode=rwc"),
            "sqlite://data/opsdoctor.db?mode=rwc"
        );
        assert!(!mask_database_url("not a url hunter2").contains("hunter2"));
    }
}
