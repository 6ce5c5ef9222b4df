//! Local stand-ins for every integration, and the environment that points the service at them.

use testkit::cloudflare::CloudflareMode;
use testkit::cloudflared::MetricsMode;
use testkit::hostname::HostnameMode;
use testkit::openai::OpenAiMode;
use testkit::stripe::StripeMode;
use testkit::Fake;

use super::{InProcessApp, TestDb};

pub const STRIPE_KEY: &str = "sk_test_51HxDoctor0123456789f3Qx";
pub const WEBHOOK: &str = "whsec_doctor0123456789abcdef";
pub const OPENAI_KEY: &str = "sk-proj-doctor0123456789abcdef";
pub const CF_TOKEN: &str = "cf-doctor-0123456789abcdefghijklmnopq";

/// Local stand-ins for every integration.
pub struct Stack {
    pub openai: Fake<OpenAiMode>,
    pub stripe: Fake<StripeMode>,
    pub cloudflare: Fake<CloudflareMode>,
    pub cloudflared: Fake<MetricsMode>,
    pub hostname: Fake<HostnameMode>,
}

impl Stack {
    pub async fn healthy() -> Self {
        Self {
            openai: testkit::openai::start(OpenAiMode::Ok).await,
            stripe: testkit::stripe::start(StripeMode::Ok { livemode: false }).await,
            cloudflare: testkit::cloudflare::start(CloudflareMode::default()).await,
            cloudflared: testkit::cloudflared::start(MetricsMode::Ready { connections: 4 }).await,
            hostname: testkit::hostname::start(HostnameMode::Ok).await,
        }
    }

    /// The environment that points opsdoctor at these stand-ins.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("OPENAI_API_KEY".into(), OPENAI_KEY.into()),
            (
                "OPENAI_BASE_URL".into(),
                format!("{}/v1", self.openai.base()),
            ),
            ("STRIPE_SECRET_KEY".into(), STRIPE_KEY.into()),
            ("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK.into()),
            ("STRIPE_API_BASE".into(), self.stripe.base()),
            ("CLOUDFLARE_API_TOKEN".into(), CF_TOKEN.into()),
            ("CLOUDFLARE_ACCOUNT_ID".into(), "acc123".into()),
            ("CLOUDFLARE_TUNNEL_ID".into(), "tun456".into()),
            (
                "CLOUDFLARE_API_BASE".into(),
                format!("{}/client/v4", self.cloudflare.base()),
            ),
            ("CLOUDFLARED_METRICS_URL".into(), self.cloudflared.base()),
            ("BASE_URL".into(), format!("{}/", self.hostname.base())),
            ("DOCTOR_MIN_INTERVAL_MS".into(), "0".into()),
            ("CHECK_TIMEOUT_MS".into(), "3000".into()),
        ]
    }
}

impl Stack {
    /// The service in process, pointed at these stand-ins, with `extra` settings on top.
    pub async fn serve(&self, db: &TestDb, extra: &[(&str, &str)]) -> InProcessApp {
        InProcessApp::spawn_with(db, &with(&self.env(), extra), &[]).await
    }
}

pub fn with<'a>(
    base: &'a [(String, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(extra);
    env
}
