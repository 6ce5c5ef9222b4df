//! The last line of defence against a secret in the log: every formatted line is searched for the
//! configured secrets (and for `scheme://user:password@` userinfo) and masked before it is written,
//! whoever logged it — our code, or a library echoing what an upstream answered.

use std::io::{self, Write};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::Regex;
use secrecy::ExposeSecret;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::ConfiguredSecret;

/// Masks known secret values and URL passwords in a formatted log line.
pub struct Scrubber {
    /// Every secret in each form it may be written in (as is, JSON- or Debug-escaped).
    secrets: Option<AhoCorasick>,
    /// The masked form shown for each pattern of `secrets`, index for index.
    masks: Vec<String>,
    userinfo: Regex,
}

impl Scrubber {
    pub fn new(secrets: &[ConfiguredSecret]) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut masks = Vec::new();
        for secret in secrets {
            let value = secret.value.expose_secret();
            let json = serde_json::Value::from(value).to_string();
            let debug = format!("{value:?}");
            for form in [value, unquote(&json), unquote(&debug)] {
                if !form.is_empty() && !patterns.iter().any(|p| p == form) {
                    patterns.push(form.to_owned());
                    masks.push(secret.masked.clone());
                }
            }
        }
        let secrets = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("literal patterns of bounded size always build")
        });
        // `scheme://user:password@`; the password may not hold an unescaped `/ ? # @`, quote or space.
        let userinfo =
            Regex::new(r#"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:"'<>\\]*):[^\s/?#@"'<>\\]+@"#)
                .expect("the userinfo pattern is valid");
        Self {
            secrets,
            masks,
            userinfo,
        }
    }

    /// The line with every secret and URL password masked.
    pub fn scrub(&self, line: &[u8]) -> Vec<u8> {
        let line = match &self.secrets {
            Some(secrets) => secrets.replace_all_bytes(line, &self.masks),
            None => line.to_vec(),
        };
        self.userinfo
            .replace_all(&line, &b"${1}:****@"[..])
            .into_owned()
    }
}

fn unquote(quoted: &str) -> &str {
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted)
}

/// Wraps a [`MakeWriter`] so that each event, which the fmt layer writes through a writer of its
/// own, is buffered whole and scrubbed before it reaches the inner writer: a secret is never split
/// across two writes where no search could see it.
pub struct ScrubbingMakeWriter<M> {
    inner: M,
    scrubber: Arc<Scrubber>,
}

impl<M> ScrubbingMakeWriter<M> {
    pub fn new(inner: M, scrubber: Scrubber) -> Self {
        Self {
            inner,
            scrubber: Arc::new(scrubber),
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ScrubbingMakeWriter<M> {
    type Writer = ScrubbedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedEvent::new(self.inner.make_writer(), &self.scrubber)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        ScrubbedEvent::new(self.inner.make_writer_for(meta), &self.scrubber)
    }
}

/// One event's bytes, held until flushed or dropped, then scrubbed and written at once.
pub struct ScrubbedEvent<W: Write> {
    inner: W,
    scrubber: Arc<Scrubber>,
    pending: Vec<u8>,
}

impl<W: Write> ScrubbedEvent<W> {
    fn new(inner: W, scrubber: &Arc<Scrubber>) -> Self {
        Self {
            inner,
            scrubber: Arc::clone(scrubber),
            pending: Vec::new(),
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let line = self.scrubber.scrub(&self.pending);
        self.pending.clear();
        self.inner.write_all(&line)
    }
}

impl<W: Write> Write for ScrubbedEvent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubbedEvent<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write from a drop; the fmt layer ignores them too.
        let _ = self.write_pending();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use secrecy::SecretString;

    use super::*;

    fn secret(value: &str, masked: &str) -> ConfiguredSecret {
        ConfiguredSecret {
            value: SecretString::from(value),
            masked: masked.to_owned(),
        }
    }

    fn scrub(secrets: &[ConfiguredSecret], line: &str) -> String {
        String::from_utf8(Scrubber::new(secrets).scrub(line.as_bytes())).unwrap()
    }

    #[test]
    fn secrets_are_masked_in_every_written_form() {
        let secrets = [
            secret("sk-proj-Qm7xZ4kR9vW2yT6uH3jB", "sk-proj-…H3jB"),
            secret("pa\"ss\\word", "****"),
        ];
        assert_eq!(
            scrub(
                &secrets,
                "Server error: 503 - <p>Bearer sk-proj-Qm7xZ4kR9vW2yT6uH3jB</p>"
            ),
            "Server error: 503 - <p>Bearer sk-proj-…H3jB</p>"
        );
        assert_eq!(
            scrub(&secrets, r#"{"a":"pa\"ss\\word","b":"pa"ss\word"}"#),
            r#"{"a":"****","b":"****"}"#
        );
        assert_eq!(scrub(&secrets, "nothing here"), "nothing here");
        assert_eq!(scrub(&[], "nothing here"), "nothing here");
    }

    #[test]
    fn url_passwords_are_masked_whoever_configured_them() {
        assert_eq!(
            scrub(
                &[],
                "connecting to http://user:hunter2@proxy:3128/x and postgres://app:pw@db/p"
            ),
            "connecting to http://user:****@proxy:3128/x and postgres://app:****@db/p"
        );
        assert_eq!(
            scrub(
                &[],
                r#"uri="https://u:p%40ss@h/" plain https://host:443/path"#
            ),
            r#"uri="https://u:****@h/" plain https://host:443/path"#
        );
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_written_in_pieces_is_scrubbed_whole() {
        let sink = Sink::default();
        let make = ScrubbingMakeWriter::new(
            {
                let sink = sink.clone();
                move || sink.clone()
            },
            Scrubber::new(&[secret("Vb7nK2qZ9xW4mR6tY3uJ", "…Y3uJ")]),
        );
        {
            let mut writer = make.make_writer();
            for piece in ["token Vb7nK2q", "Z9xW4mR6", "tY3uJ end\n"] {
                writer.write_all(piece.as_bytes()).unwrap();
            }
        }
        let written = sink.0.lock().unwrap().concat();
        assert_eq!(String::from_utf8(written).unwrap(), "token …Y3uJ end\n");
    }

    #[test]
    fn the_fmt_layer_writes_scrubbed_lines() {
        let sink = Sink::default();
        let make = ScrubbingMakeWriter::new(
            {
                let sink = sink.clone();
                move || sink.clone()
            },
            Scrubber::new(&[secret("whsec_Hk3zQ6wX9mB2vR5tY8pL", "whsec_…Y8pL")]),
        );
        let subscriber = tracing_subscriber::fmt().json().with_writer(make).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                body = "echo whsec_Hk3zQ6wX9mB2vR5tY8pL",
                "got whsec_Hk3zQ6wX9mB2vR5tY8pL"
            );
        });
        let written = String::from_utf8(sink.0.lock().unwrap().concat()).unwrap();
        assert!(written.contains("whsec_…Y8pL"), "{written}");
        assert!(!written.contains("Hk3zQ6wX"), "{written}");
    }
}
