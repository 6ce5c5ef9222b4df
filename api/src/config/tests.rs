//! The configuration's parsing, masking and secret listing, from variable maps.
use std::collections::HashMap;

use ::checks::CheckName;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_are_safe_and_local() {
    let c = config(&[]).unwrap();
    assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
    assert_eq!(c.host.to_string(), "127.0.0.1");
    assert_eq!(c.port, 8080);
    assert!(c.admin_token.is_none());
    assert_eq!(c.sqlite_dir(), Some(PathBuf::from("data")));
}

#[test]
fn bad_values_name_their_variable() {
    let err = config(&[("PORT", "abc")]).unwrap_err();
    assert_eq!(err.var, "PORT");
    assert_eq!(
        err.to_string(),
        "invalid configuration: PORT: `abc` is not a port number from 0 to 65535"
    );
    assert_eq!(
        config(&[("DATABASE_URL", "mongodb://x/y")])
            .unwrap_err()
            .var,
        "DATABASE_URL"
    );
    assert_eq!(
        config(&[("DATABASE_URL", "not a url")]).unwrap_err().var,
        "DATABASE_URL"
    );
    assert_eq!(
        config(&[("DATABASE_URL", "postgres://")]).unwrap_err().var,
        "DATABASE_URL"
    );
    assert_eq!(
        config(&[("REQUEST_TIMEOUT_MS", "soon")]).unwrap_err().var,
        "REQUEST_TIMEOUT_MS"
    );
    assert_eq!(config(&[("HOST", "localhost:80")]).unwrap_err().var, "HOST");
}

#[test]
fn checks_settings_are_validated() {
    assert_eq!(
        config(&[("REQUIRED_CHECKS", "database,redis")])
            .unwrap_err()
            .var,
        "REQUIRED_CHECKS"
    );
    assert_eq!(
        config(&[("OPENAI_API_KEY", "sk-x"), ("OPENAI_BASE_URL", "ftp://x")])
            .unwrap_err()
            .var,
        "OPENAI_BASE_URL"
    );
    assert_eq!(
        config(&[("CLOUDFLARE_TUNNEL_ID", "t")]).unwrap_err().var,
        "CLOUDFLARE_TUNNEL_ID"
    );
    assert_eq!(
        config(&[("CHECK_TIMEOUT_MS_STRIPE", "fast")])
            .unwrap_err()
            .var,
        "CHECK_TIMEOUT_MS_STRIPE"
    );
    let c = config(&[
        ("REQUIRED_CHECKS", " Database , stripe "),
        ("CHECK_TIMEOUT_MS_STRIPE", "750"),
    ])
    .unwrap();
    assert_eq!(
        c.checks
            .required
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["database", "stripe"]
    );
    assert_eq!(
        c.checks.timeouts[&CheckName::Stripe],
        Duration::from_millis(750)
    );
    assert!(c.checks.openai.is_none() && c.checks.stripe.is_none());
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let err = config(&[("ADMIN_TOKEN", "tiny-secret")]).unwrap_err();
    assert!(!err.to_string().contains("tiny-secret"));
    let c = config(&[
        ("ADMIN_TOKEN", "admintoken-PLANTED-0123456789"),
        ("DATABASE_URL", "postgres://u:dbpass-PLANTED@h:5432/d"),
        ("OPENAI_API_KEY", "sk-proj-PLANTED0123456789abcdef"),
        ("STRIPE_SECRET_KEY", "sk_live_PLANTED0123456789abcdef"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_PLANTED0123456789abcdef"),
        (
            "CLOUDFLARE_API_TOKEN",
            "cfPLANTED0123456789abcdefghijklmnop",
        ),
    ])
    .unwrap();
    let shown = format!("{c:?} {}", c.masked());
    assert!(!shown.contains("PLANTED"), "{shown}");
}

#[test]
fn base_urls_with_credentials_are_refused_without_echoing_them() {
    for (var, key) in [
        ("OPENAI_BASE_URL", Some(("OPENAI_API_KEY", "sk-x"))),
        ("STRIPE_API_BASE", Some(("STRIPE_SECRET_KEY", "sk_test_x"))),
        ("CLOUDFLARE_API_BASE", None),
        ("CLOUDFLARED_METRICS_URL", None),
        ("BASE_URL", None),
    ] {
        for url in [
            "http://user:pw-PLANTED@127.0.0.1:9/v1",
            "https://tok-PLANTED@api.example.com",
            "ftp://u:pw-PLANTED@example.com",
        ] {
            let mut vars = vec![(var, url)];
            vars.extend(key);
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, var, "{url}");
            assert!(!err.to_string().contains("PLANTED"), "{err}");
        }
    }
    let err = config(&[("BASE_URL", "https://u:pw@example.com")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: BASE_URL: carries credentials (`user:password@`): remove them; base URLs must not hold secrets"
    );
    assert_eq!(
        config(&[("BASE_URL", "ftp://example.com/x?token=PLANTED")])
            .unwrap_err()
            .to_string(),
        "invalid configuration: BASE_URL: `ftp://example.com/x?token=****` is not an http(s) URL"
    );
}

#[test]
fn secrets_lists_every_configured_secret_once() {
    let c = config(&[
        ("ADMIN_TOKEN", "admintoken-PLANTED-0123456789"),
        (
            "DATABASE_URL",
            "postgres://u:db%40pass@h:5432/d?sslpassword=keypass",
        ),
        ("OPENAI_API_KEY", "sk-proj-PLANTED0123456789abcdef"),
        ("STRIPE_SECRET_KEY", "sk_live_PLANTED0123456789abcdef"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_PLANTED0123456789abcdef"),
        (
            "CLOUDFLARE_API_TOKEN",
            "cfPLANTED0123456789abcdefghijklmnop",
        ),
        ("CLOUDFLARE_ACCOUNT_ID", "acct"),
        ("CLOUDFLARE_TUNNEL_ID", "tunnel"),
    ])
    .unwrap();
    let listed: Vec<(String, String)> = c
        .secrets()
        .iter()
        .map(|s| (s.value.expose_secret().to_owned(), s.masked.clone()))
        .collect();
    let expected = [
        ("db%40pass", "****"),
        ("db@pass", "****"),
        ("keypass", "****"),
        ("admintoken-PLANTED-0123456789", "…6789"),
        ("sk-proj-PLANTED0123456789abcdef", "sk-proj-…cdef"),
        ("sk_live_PLANTED0123456789abcdef", "sk_live_…cdef"),
        ("whsec_PLANTED0123456789abcdef", "whsec_…cdef"),
        ("cfPLANTED0123456789abcdefghijklmnop", "…mnop"),
    ];
    assert_eq!(listed, expected.map(|(v, m)| (v.to_owned(), m.to_owned())));
    assert!(config(&[]).unwrap().secrets().is_empty());
}

/// The README's configuration table, from its header row to the first line that is not a row.
fn readme_table() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md beside the workspace");
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("README has a Configuration section")
        .1;
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Variable |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn readme_table_matches_the_declarations() {
    let readme = readme_table();
    let rows: Vec<&str> = readme.lines().skip(2).collect();
    // Name and default first, so a mismatch says which setting disagrees.
    for setting in settings::SETTINGS {
        let cell = |row: &str| row.split(" | ").next().map(str::to_owned);
        let row = rows
            .iter()
            .find(|row| cell(row).is_some_and(|c| c.contains(&format!("`{}`", setting.name))));
        let Some(row) = row else {
            panic!("README.md does not document {}", setting.name);
        };
        let default = row.split(" | ").nth(1).unwrap_or_default();
        let declared = setting
            .default
            .map_or_else(|| "unset".to_owned(), |d| format!("`{d}`"));
        assert_eq!(
            default, declared,
            "README.md's default for {} disagrees with its declaration",
            setting.name
        );
    }
    for row in &rows {
        assert!(
            settings::SETTINGS
                .iter()
                .any(|s| row.starts_with(&format!("| `{}`", s.name))),
            "README.md documents a setting that is not declared: {row}"
        );
    }
    let expected = settings::markdown_table();
    assert!(
        readme == expected,
        "README.md's configuration table differs from the declarations; it should read:\n{expected}"
    );
}

#[test]
fn declared_defaults_are_the_defaults_in_effect() {
    let c = config(&[]).unwrap();
    let masked = c.masked();
    for setting in settings::SETTINGS {
        let (Some(default), settings::Shown::Value(_)) = (setting.default, &setting.shown) else {
            continue;
        };
        let shown = match &masked[setting.name] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if setting.name != "DATABASE_URL" {
            assert_eq!(shown, default, "{}", setting.name);
        }
    }
    assert_eq!(
        c.checks.timeouts[&CheckName::Database],
        Duration::from_millis(settings::DATABASE_CHECK_TIMEOUT_MS)
    );
    assert!(settings::CHECK_TIMEOUT_MS_NAME.doc.contains(&format!(
        "`CHECK_TIMEOUT_MS_DATABASE` defaults to {}",
        settings::DATABASE_CHECK_TIMEOUT_MS
    )));
}

#[test]
fn every_check_has_a_timeout_variable_of_its_own() {
    for name in CheckName::ALL {
        let var = settings::check_timeout_var(name);
        let err = config(&[(var.as_str(), "0")]).unwrap_err();
        assert_eq!(err.var, var);
        let c = config(&[(var.as_str(), "1234")]).unwrap();
        assert_eq!(c.checks.timeouts[&name], Duration::from_millis(1234));
        assert_eq!(
            c.masked()["CHECK_TIMEOUT_MS_<NAME>"][name.as_str().to_ascii_uppercase()],
            1234
        );
    }
}

#[test]
fn command_line_overrides_win_over_the_environment() {
    let overrides = [
        (&settings::HOST, "0.0.0.0".to_owned()),
        (&settings::PORT, "0".to_owned()),
    ];
    let env = |name: &str| match name {
        "HOST" => Some("not an address".to_owned()),
        "PORT" => Some("8081".to_owned()),
        _ => None,
    };
    let c = Config::from_lookup(overridden(&overrides, env)).unwrap();
    assert_eq!((c.host.to_string(), c.port), ("0.0.0.0".to_owned(), 0));
}
