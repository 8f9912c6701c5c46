//! Layered settings: built-in defaults, then an optional TOML file, then `DOORSTEP__SECTION__KEY`
//! environment variables (e.g. `DOORSTEP__SERVER__PORT=6000`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use doorstep_domain::CodeTimescales;
use doorstep_domain::escalation::{
    Deadline, EscalationLevel, EscalationPolicy, LadderStep, default_ladder,
};
use doorstep_domain::input::EmailAddress;
use doorstep_notifier::{RetryPolicy, retry_delay};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The HS256 secret of [`Settings::for_tests`]; tests and benchmarks sign their tokens with it.
pub const TEST_JWT_SECRET: &str = "doorstep test secret: never use it outside tests";

/// The documented default port.
pub const DEFAULT_PORT: u16 = 50051;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    #[serde(default)]
    pub calendar: CalendarSettings,
    #[serde(default)]
    pub code: CodeSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub report: ReportSettings,
    #[serde(default)]
    pub escalation: EscalationSettings,
    #[serde(default)]
    pub notifier: NotifierSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub privacy: PrivacySettings,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub inspections: InspectionSettings,
    #[serde(default)]
    pub equality: EqualitySettings,
    #[serde(default)]
    pub console: ConsoleSettings,
}

/// Equality conditions in contracts: how recent a contractor's equality audit must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EqualitySettings {
    /// A contractor with no equality audit dated within this many months before today is
    /// flagged (`equality_audit_overdue`) and counted by `doorstep.contractors.equality_audit_overdue`.
    pub audit_max_age_months: u32,
}

impl EqualitySettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=120).contains(&self.audit_max_age_months) {
            return Err(format!(
                "equality.audit_max_age_months is {}: it must be 1 to 120 months",
                self.audit_max_age_months
            ));
        }
        Ok(())
    }
}

/// The default port of the web console.
pub const DEFAULT_CONSOLE_PORT: u16 = 8080;

/// The web console (`services/doorstep/src/console`): HTML pages for managers, liaison officers
/// and contractors, on a port of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// Loopback by default, as the API is.
    pub host: IpAddr,
    /// 0 picks a free port (tests do this).
    pub port: u16,
    /// Where people reach the console, without a trailing slash: the base of links in emails and
    /// of the OpenID Connect redirect URI (`{public_url}/auth/callback`). Cookies are `Secure`
    /// when it is `https://`.
    pub public_url: String,
    /// Homes owned, the denominator of CH01; 0 leaves CH01 out of the programme page.
    pub homes: u64,
    /// A session unused for this long ends.
    pub idle_minutes: u32,
    /// A session ends this long after sign-in, however much it is used.
    pub absolute_hours: u32,
    /// Sign-in through an OpenID Connect provider; absent: API-key sign-in only.
    pub oidc: Option<OidcSettings>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_CONSOLE_PORT,
            public_url: format!("http://127.0.0.1:{DEFAULT_CONSOLE_PORT}"),
            homes: 0,
            idle_minutes: 30,
            absolute_hours: 12,
            oidc: None,
        }
    }
}

impl ConsoleSettings {
    /// `public_url` without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// The case page of a complaint, for links in escalation emails.
    pub fn complaint_url(&self, complaint_id: &str) -> String {
        format!("{}/complaints/{complaint_id}", self.base_url())
    }

    pub fn validate(&self) -> Result<(), String> {
        let url = self.public_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("console.public_url must be an http:// or https:// URL".to_owned());
        }
        if self.idle_minutes == 0 || self.absolute_hours == 0 {
            return Err(
                "console.idle_minutes and console.absolute_hours must be at least 1".to_owned(),
            );
        }
        if let Some(oidc) = &self.oidc {
            if oidc.issuer_url.trim().is_empty() || oidc.client_id.trim().is_empty() {
                return Err("console.oidc needs issuer_url and client_id".to_owned());
            }
            for (claim_value, role) in &oidc.role_map {
                if !crate::auth::Role::ALL
                    .iter()
                    .any(|known| known.as_str() == role)
                {
                    return Err(format!(
                        "console.oidc.role_map.{claim_value}: `{role}` is not a role; use intake, \
                         officer, manager, contractor, admin or auditor"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Default for EqualitySettings {
    fn default() -> Self {
        Self {
            audit_max_age_months: 12,
        }
    }
}

/// OpenID Connect sign-in (authorization code with PKCE), e.g. Microsoft Entra ID.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer, whose `/.well-known/openid-configuration` is read at start.
    pub issuer_url: String,
    pub client_id: String,
    /// Absent for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The claim (in the ID token, else userinfo) holding the user's roles or groups: a string
    /// or an array of strings.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim value → Doorstep role name; a value that is already a role name maps to itself.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The claim holding a contractor user's contractor id.
    #[serde(default = "default_contractor_claim")]
    pub contractor_claim: String,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".to_owned(), "profile".to_owned()]
}

fn default_roles_claim() -> String {
    "doorstep_roles".to_owned()
}

fn default_contractor_claim() -> String {
    "doorstep_contractor_id".to_owned()
}

/// The default port of the Prometheus scrape endpoint (OpenTelemetry's convention).
pub const DEFAULT_METRICS_PORT: u16 = 9464;

/// The Prometheus scrape endpoint (`GET /metrics`), on a port of its own so that it can be
/// exposed to a scraper without exposing the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Loopback by default, as the API is.
    pub host: IpAddr,
    /// 0 picks a free port (tests do this).
    pub port: u16,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_METRICS_PORT,
        }
    }
}

/// TLS for the gRPC port: on when a certificate and key are given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to: turns on mutual TLS.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`, also accept clients without a certificate (they still need a
    /// credential); by default a client certificate is required.
    pub client_certificate_optional: bool,
}

/// Bounds on what one caller can ask of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// The largest request message accepted, in bytes (larger is refused before decoding).
    pub max_message_bytes: usize,
    /// Calls per second each principal may make on average; 0 turns the limit off.
    pub requests_per_second: u32,
    /// Calls a principal may make at once above the average.
    pub burst: u32,
    /// Bad API keys one address may present in a minute before keys not already verified are
    /// refused unchecked (RESOURCE_EXHAUSTED); 0 turns the limit off.
    pub failed_api_keys_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            // 10,000 visits of a RecordVisits batch take about 1.5 MB.
            max_message_bytes: 4 * 1024 * 1024,
            requests_per_second: 50,
            burst: 100,
            failed_api_keys_per_minute: 20,
        }
    }
}

/// Where the master keys that wrap every resident's data key come from (see the server's
/// `privacy::master_keys`). Keys come from the settings when either key setting is given, and
/// from files otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// The master key itself, base64 of 32 bytes (e.g. `DOORSTEP__PRIVACY__MASTER_KEY` injected
    /// from a secret store or KMS); never printed. Every replica needs the same one. It is
    /// master key generation 1.
    pub master_key: Option<SecretString>,
    /// Master keys by generation, `"<generation>:<base64>"` entries separated by commas (e.g.
    /// `DOORSTEP__PRIVACY__MASTER_KEYS="2:…,1:…"` from a secret store); never printed. The
    /// newest wraps new keys; `doorstep keys rotate-master` moves every key to it.
    pub master_keys: Option<SecretString>,
    /// Otherwise this file (generation 1), created (mode 0600) on the first start, and the files
    /// beside it that rotations write: `<file>.2`, `<file>.3`, ….
    pub master_key_file: PathBuf,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            master_key: None,
            master_keys: None,
            master_key_file: PathBuf::from("data/master.key"),
        }
    }
}

/// How callers prove who they are. See the README's security section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The shared secret of HS256 JWTs (at least 32 bytes); never printed.
    pub jwt_hs256_secret: Option<SecretString>,
    /// PEM public keys of an identity provider: RSA keys verify RS256 tokens, EC P-256 keys ES256.
    pub jwt_public_key_files: Vec<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// The API keys, hashed (`doorstep api-keys create` adds to it).
    pub api_keys_file: PathBuf,
    /// On the first start (no key file yet), create an admin key beside the key file.
    pub create_first_admin_key: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_hs256_secret: None,
            jwt_public_key_files: Vec::new(),
            jwt_issuer: None,
            jwt_audience: None,
            api_keys_file: PathBuf::from("data/api-keys.json"),
            create_first_admin_key: true,
        }
    }
}

/// How the regulator's measures are counted where the guidance is still to be confirmed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSettings {
    /// Whether a response inside an agreed extension counts as within the Code's timescales
    /// (CH02 and contractors' "answered within the Code").
    pub extensions_count_as_within_code: bool,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            extensions_count_as_within_code: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Loopback by default: the embedded default is not reachable from other machines.
    pub host: IpAddr,
    /// 0 picks a free port (tests do this).
    pub port: u16,
    /// How long in-flight calls may take to finish after a shutdown signal.
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    /// What this process does: `all` (the default), `api` or `notifier`.
    #[serde(default)]
    pub role: Role,
}

/// What one process runs. Every role follows the log into the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The gRPC API and the notifier in one process: the embedded default.
    #[default]
    All,
    /// The gRPC API without the notifier, for replicas beside a notifier replica.
    Api,
    /// Only the notifier (scheduler and deliveries), serving gRPC health and nothing else.
    Notifier,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    pub fn runs_notifier(self) -> bool {
        matches!(self, Self::All | Self::Notifier)
    }
}

/// The escalation ladder of each Code deadline and who each level tells.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationSettings {
    /// Per deadline (`stage_one_acknowledgement`, `stage_one_response`,
    /// `stage_two_acknowledgement`, `stage_two_response`), the ladder's steps in firing order.
    /// A deadline left out gets the default ladder; an empty list escalates nothing.
    pub ladders: BTreeMap<String, Vec<LadderStepSettings>>,
    /// Email addresses told at each level, by level name.
    pub recipients: BTreeMap<String, Vec<String>>,
    /// Extra addresses per contractor id and level, e.g. the contractor's own complaints lead.
    pub contractor_recipients: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// When a step before its deadline (a warning) fires on the morning of its working day, as
    /// `HH:MM` in UK time (Europe/London, summer time included). Default `08:00`.
    pub warning_time: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderStepSettings {
    pub level: String,
    /// Working days from the deadline: negative before it, 0 the breach, positive after it.
    pub working_days: i32,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        Self {
            ladders: Deadline::ALL
                .into_iter()
                .map(|deadline| (deadline.key().to_owned(), default_ladder_settings()))
                .collect(),
            recipients: BTreeMap::new(),
            contractor_recipients: BTreeMap::new(),
            warning_time: "08:00".to_owned(),
        }
    }
}

fn default_ladder_settings() -> Vec<LadderStepSettings> {
    default_ladder()
        .into_iter()
        .map(|(level, working_days)| LadderStepSettings {
            level,
            working_days,
        })
        .collect()
}

impl EscalationSettings {
    /// The policy these settings describe, or the first key that is wrong.
    pub fn policy(&self) -> Result<EscalationPolicy, String> {
        let mut ladders = BTreeMap::new();
        for key in self.ladders.keys() {
            if !Deadline::ALL.iter().any(|deadline| deadline.key() == key) {
                return Err(format!(
                    "escalation.ladders.{key}: not a deadline; use stage_one_acknowledgement, \
                     stage_one_response, stage_two_acknowledgement or stage_two_response"
                ));
            }
        }
        for deadline in Deadline::ALL {
            let key = format!("escalation.ladders.{}", deadline.key());
            let steps = match self.ladders.get(deadline.key()) {
                Some(steps) => steps.clone(),
                None => default_ladder_settings(),
            };
            let steps = steps
                .iter()
                .enumerate()
                .map(|(index, step)| {
                    Ok(LadderStep {
                        level: EscalationLevel::parse(
                            &format!("{key}[{index}].level"),
                            &step.level,
                        )
                        .map_err(|error| error.to_string())?,
                        offset_working_days: step.working_days,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            ladders.insert(deadline, steps);
        }
        let addresses = |key: &str, values: &[String]| -> Result<Vec<EmailAddress>, String> {
            values
                .iter()
                .enumerate()
                .map(|(index, value)| {
                    EmailAddress::parse(&format!("{key}[{index}]"), value)
                        .map_err(|error| error.to_string())
                })
                .collect()
        };
        let level = |key: &str, name: &str| {
            EscalationLevel::parse(key, name).map_err(|error| error.to_string())
        };
        let mut recipients = BTreeMap::new();
        for (name, values) in &self.recipients {
            let key = format!("escalation.recipients.{name}");
            recipients.insert(level(&key, name)?, addresses(&key, values)?);
        }
        let mut contractor_recipients = BTreeMap::new();
        for (contractor, levels) in &self.contractor_recipients {
            let mut per_level = BTreeMap::new();
            for (name, values) in levels {
                let key = format!("escalation.contractor_recipients.{contractor}.{name}");
                per_level.insert(level(&key, name)?, addresses(&key, values)?);
            }
            contractor_recipients.insert(contractor.clone(), per_level);
        }
        let warning_time = chrono::NaiveTime::parse_from_str(self.warning_time.trim(), "%H:%M")
            .map_err(|_| {
                format!(
                    "escalation.warning_time: `{}` is not a time of day; use HH:MM in UK time, \
                     e.g. 08:00",
                    self.warning_time
                )
            })?;
        EscalationPolicy::new(ladders, recipients, contractor_recipients)
            .map(|policy| policy.with_warning_time(warning_time))
            .map_err(|error| error.to_string())
    }
}

/// On-site inspections: how long a "not met" finding has, its escalation ladder, and the
/// coverage the landlord aims for.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InspectionSettings {
    /// Working days a finding has to be resolved, counted from the day it was opened.
    pub finding_due_working_days: u32,
    /// Inspections per 100 visits the landlord aims for; coverage below it is flagged.
    pub coverage_target_per_100_visits: f64,
    /// The ladder of an unresolved finding, offsets in working days from its due date (0: the
    /// due day has ended). Levels are told through `escalation.recipients` like the Code
    /// deadlines' levels; an empty list escalates nothing.
    pub escalation_ladder: Vec<LadderStepSettings>,
}

impl Default for InspectionSettings {
    fn default() -> Self {
        Self {
            finding_due_working_days: 5,
            coverage_target_per_100_visits: 10.0,
            escalation_ladder: doorstep_domain::inspection::default_finding_ladder()
                .into_iter()
                .map(|(level, working_days)| LadderStepSettings {
                    level,
                    working_days,
                })
                .collect(),
        }
    }
}

impl InspectionSettings {
    /// The finding ladder these settings describe, or the first key that is wrong.
    pub fn ladder(&self) -> Result<Vec<LadderStep>, String> {
        let key = "inspections.escalation_ladder";
        let mut steps: Vec<LadderStep> = Vec::new();
        for (index, step) in self.escalation_ladder.iter().enumerate() {
            let level = EscalationLevel::parse(&format!("{key}[{index}].level"), &step.level)
                .map_err(|error| error.to_string())?;
            if steps.iter().any(|earlier| earlier.level == level) {
                return Err(format!("{key}[{index}]: level `{level}` appears twice"));
            }
            if let Some(last) = steps.last()
                && step.working_days <= last.offset_working_days
            {
                return Err(format!(
                    "{key}[{index}]: steps must be in strictly increasing working-day order"
                ));
            }
            if !(0..=250).contains(&step.working_days) {
                return Err(format!(
                    "{key}[{index}].working_days: must be 0 to 250 working days after the due date"
                ));
            }
            steps.push(LadderStep {
                level,
                offset_working_days: step.working_days,
            });
        }
        Ok(steps)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=250).contains(&self.finding_due_working_days) {
            return Err("inspections.finding_due_working_days: must be 1 to 250".to_owned());
        }
        if !self.coverage_target_per_100_visits.is_finite()
            || self.coverage_target_per_100_visits < 0.0
        {
            return Err(
                "inspections.coverage_target_per_100_visits: must be a number of 0 or more"
                    .to_owned(),
            );
        }
        self.ladder().map(|_| ())
    }
}

/// How the notifier finds due escalations and delivers them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// How often the scheduler asks the read model for due escalations, and the delivery worker
    /// for due deliveries.
    pub poll_interval_ms: u64,
    /// Webhooks told of every escalation.
    pub webhooks: Vec<WebhookSettings>,
    /// Email to each escalation's recipients; off when absent.
    pub email: Option<EmailSettings>,
    /// Tries per delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// The wait after the first failed try; each later wait doubles, up to `max_backoff_ms`, with
    /// up to half of it added at random so that receivers coming back are not hit all at once.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How long one HTTP or SMTP attempt may take.
    pub timeout_ms: u64,
    /// The link an escalation email gives to its complaint's case page: `{complaint_id}` is
    /// replaced by the complaint's id. Unset: the console's case page,
    /// `{console.public_url}/complaints/{complaint_id}` ([`Settings::case_url_template`]).
    pub case_url_template: Option<String>,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            webhooks: Vec::new(),
            email: None,
            // 5 s doubling to an hour, then hourly: the last try comes 24 h 25 min after the first,
            // so a receiver down overnight or for a whole day still gets everything.
            max_attempts: 34,
            initial_backoff_ms: 5_000,
            max_backoff_ms: 3_600_000,
            timeout_ms: 10_000,
            case_url_template: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST: `https://…` (or `http://` on a private network or loopback).
    pub url: String,
    /// The shared secret the receiver checks `Doorstep-Signature` with.
    pub secret: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP relay: plain SMTP, e.g. the local MTA on localhost:25.
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// The sender, e.g. `Doorstep <complaints@landlord.example>`.
    pub from: String,
}

fn default_smtp_port() -> u16 {
    25
}

impl NotifierSettings {
    /// How often and how long the delivery worker tries each delivery.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    /// How long after its first try a delivery's last try comes at the least (with no jitter,
    /// which only lengthens the waits): the time a receiver may be down and still get it.
    pub fn retry_horizon(&self) -> Duration {
        let policy = self.retry_policy();
        (1..self.max_attempts)
            .map(|attempt| retry_delay(&policy, attempt, 0.0))
            .sum()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.poll_interval_ms == 0 {
            return Err("notifier.poll_interval_ms must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            return Err("notifier.max_attempts must be at least 1".to_owned());
        }
        if self.initial_backoff_ms == 0 || self.max_backoff_ms < self.initial_backoff_ms {
            return Err(
                "notifier.initial_backoff_ms must be at least 1 and at most notifier.max_backoff_ms"
                    .to_owned(),
            );
        }
        for (index, webhook) in self.webhooks.iter().enumerate() {
            let url = webhook.url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "notifier.webhooks[{index}].url must be an http:// or https:// URL"
                ));
            }
            if self.webhooks[..index]
                .iter()
                .any(|earlier| earlier.url.trim() == url)
            {
                // Deliveries are keyed by URL: two entries for one URL would share their ids.
                return Err(format!("notifier.webhooks[{index}].url is listed twice"));
            }
            if webhook.secret.expose_secret().len() < 16 {
                return Err(format!(
                    "notifier.webhooks[{index}].secret must be at least 16 characters"
                ));
            }
        }
        let template = self.case_url_template.as_deref().map(str::trim);
        if template.is_some_and(|template| {
            !(template.starts_with("https://") || template.starts_with("http://"))
                || !template.contains("{complaint_id}")
        }) {
            return Err(
                "notifier.case_url_template must be an http:// or https:// URL holding \
                 {complaint_id}, e.g. https://doorstep.landlord.example/complaints/{complaint_id}"
                    .to_owned(),
            );
        }
        if let Some(email) = &self.email {
            if email.smtp_host.trim().is_empty() {
                return Err("notifier.email.smtp_host is required".to_owned());
            }
            if !email.from.contains('@') {
                return Err("notifier.email.from must hold an email address".to_owned());
            }
        }
        Ok(())
    }
}

/// The URL is a secret (it may hold a password): `Debug` shows it with the password masked.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (relative or absolute), the embedded default, or
    /// `postgres://user:password@host/database` for several replicas on one database.
    url: SecretString,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    /// A GOV.UK `bank-holidays.json` file that replaces the holidays shipped with Doorstep.
    pub bank_holidays_file: Option<PathBuf>,
    /// The landlord's own closure days, `YYYY-MM-DD`.
    #[serde(default)]
    pub closure_days: Vec<NaiveDate>,
}

/// The Code's timescales in working days; defaults are the Code's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeSettings {
    pub stage_one_acknowledgement_days: u32,
    pub stage_one_response_days: u32,
    pub stage_one_extension_cap_days: u32,
    pub stage_two_acknowledgement_days: u32,
    pub stage_two_response_days: u32,
    pub stage_two_extension_cap_days: u32,
}

impl Default for CodeSettings {
    fn default() -> Self {
        let code = CodeTimescales::default();
        Self {
            stage_one_acknowledgement_days: code.stage_one_acknowledgement,
            stage_one_response_days: code.stage_one_response,
            stage_one_extension_cap_days: code.stage_one_extension_cap,
            stage_two_acknowledgement_days: code.stage_two_acknowledgement,
            stage_two_response_days: code.stage_two_response,
            stage_two_extension_cap_days: code.stage_two_extension_cap,
        }
    }
}

impl CodeSettings {
    /// Every clock must run at least one working day, or a deadline could fall on the day of
    /// receipt, a weekend included.
    pub fn validate(&self) -> Result<(), String> {
        let clocks = [
            (
                "code.stage_one_acknowledgement_days",
                self.stage_one_acknowledgement_days,
            ),
            ("code.stage_one_response_days", self.stage_one_response_days),
            (
                "code.stage_two_acknowledgement_days",
                self.stage_two_acknowledgement_days,
            ),
            ("code.stage_two_response_days", self.stage_two_response_days),
        ];
        match clocks.iter().find(|(_, days)| *days == 0) {
            Some((key, _)) => Err(format!("{key} must be at least 1 working day")),
            None => Ok(()),
        }
    }

    pub fn timescales(&self) -> CodeTimescales {
        CodeTimescales {
            stage_one_acknowledgement: self.stage_one_acknowledgement_days,
            stage_one_response: self.stage_one_response_days,
            stage_one_extension_cap: self.stage_one_extension_cap_days,
            stage_two_acknowledgement: self.stage_two_acknowledgement_days,
            stage_two_response: self.stage_two_response_days,
            stage_two_extension_cap: self.stage_two_extension_cap_days,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Write logs as JSON lines instead of text.
    #[serde(default)]
    pub json: bool,
}

fn default_shutdown_grace_seconds() -> u64 {
    10
}

impl Settings {
    /// The link escalation emails give to a complaint: `notifier.case_url_template` when set,
    /// else the console's case page under `console.public_url`.
    pub fn case_url_template(&self) -> String {
        self.notifier
            .case_url_template
            .clone()
            .unwrap_or_else(|| format!("{}/complaints/{{complaint_id}}", self.console.base_url()))
    }

    /// Reads the defaults, then `file` if given (it must exist) or `doorstep.toml` in the working
    /// directory if present, then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, config::ConfigError> {
        Self::load_with_environment(file, None)
    }

    /// As [`Settings::load`], reading the `DOORSTEP__…` variables of `environment` instead of the
    /// process's: how a test checks the settings a deployment file gives the server.
    pub fn load_from_environment(
        file: Option<&std::path::Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, config::ConfigError> {
        Self::load_with_environment(file, Some(environment.into_iter().collect()))
    }

    /// As [`Settings::load`], reading `environment` instead of the process's variables when given.
    fn load_with_environment(
        file: Option<&std::path::Path>,
        environment: Option<config::Map<String, String>>,
    ) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("server.host", Ipv4Addr::LOCALHOST.to_string())?
            .set_default("server.port", i64::from(DEFAULT_PORT))?
            .set_default("database.url", "sqlite://data/doorstep.db")?;
        builder = match file {
            Some(path) => builder.add_source(config::File::from(path).required(true)),
            None => builder.add_source(config::File::with_name("doorstep.toml").required(false)),
        };
        builder
            .add_source(
                config::Environment::with_prefix("DOORSTEP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(environment),
            )
            .build()?
            .try_deserialize()
    }

    /// Settings for one test: a free loopback port, a database and API keys in `data_dir`, and
    /// JWTs signed with [`TEST_JWT_SECRET`].
    pub fn for_tests(data_dir: &std::path::Path) -> Self {
        Self {
            server: ServerSettings {
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 0,
                shutdown_grace_seconds: 5,
                // Tests run without the notifier unless they are about it: their complaints are
                // back-dated, and the real clock would escalate them, adding events to logs the
                // tests count.
                role: Role::Api,
            },
            database: DatabaseSettings::new(&format!(
                "sqlite://{}",
                data_dir.join("doorstep.db").display()
            )),
            calendar: CalendarSettings::default(),
            code: CodeSettings::default(),
            log: LogSettings::default(),
            report: ReportSettings::default(),
            escalation: EscalationSettings::default(),
            notifier: NotifierSettings {
                poll_interval_ms: 50,
                ..NotifierSettings::default()
            },
            auth: AuthSettings {
                jwt_hs256_secret: Some(SecretString::from(TEST_JWT_SECRET)),
                api_keys_file: data_dir.join("api-keys.json"),
                ..AuthSettings::default()
            },
            privacy: PrivacySettings {
                master_key: None,
                master_keys: None,
                master_key_file: data_dir.join("master.key"),
            },
            tls: TlsSettings::default(),
            // Tests and benchmarks drive one principal hard; the rate limit's own test turns it
            // on.
            limits: LimitSettings {
                requests_per_second: 0,
                ..LimitSettings::default()
            },
            metrics: MetricsSettings {
                port: 0,
                ..MetricsSettings::default()
            },
            inspections: InspectionSettings::default(),
            equality: EqualitySettings::default(),
            console: ConsoleSettings {
                port: 0,
                ..ConsoleSettings::default()
            },
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &without_password(self.url()))
            .finish()
    }
}

/// `url` with any password replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl DatabaseSettings {
    pub fn new(url: &str) -> Self {
        Self {
            url: SecretString::from(url),
        }
    }

    /// The URL itself, password included: for opening connections only, never for logs.
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn is_postgres(&self) -> bool {
        self.url().starts_with("postgres://") || self.url().starts_with("postgresql://")
    }

    /// Where the read models live. PostgreSQL: the same database, shared by every replica.
    /// SQLite: a file beside the event log (`doorstep.db` → `doorstep.read-models.db`), because
    /// SQLite has one write lock per file and the read models' batches would otherwise hold up
    /// intake. Each read-model batch and its checkpoint still commit together in that file.
    pub fn read_model_url(&self) -> Result<String, String> {
        if self.is_postgres() {
            return Ok(self.url().to_owned());
        }
        Ok(format!(
            "sqlite://{}?mode=rwc",
            self.sqlite_read_model_path()?.display()
        ))
    }

    /// On SQLite, the read models' file beside the event log's.
    pub fn sqlite_read_model_path(&self) -> Result<PathBuf, String> {
        let path = self.sqlite_path()?;
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("doorstep");
        Ok(path.with_file_name(format!("{stem}.read-models.db")))
    }

    /// The SQLite file the URL names.
    pub fn sqlite_path(&self) -> Result<PathBuf, String> {
        self.url()
            .strip_prefix("sqlite://")
            .or_else(|| self.url().strip_prefix("sqlite:"))
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                format!(
                    "database.url `{}` is not supported: use sqlite://path/to/file.db or postgres://…",
                    without_password(self.url())
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "24 h 25 min": how the README and the example file write a horizon.
    fn in_hours_and_minutes(horizon: Duration) -> String {
        let minutes = horizon.as_secs() / 60;
        format!("{} h {} min", minutes / 60, minutes % 60)
    }

    #[test]
    fn deliveries_are_tried_for_at_least_a_day_and_the_documents_say_for_how_long() {
        let horizon = NotifierSettings::default().retry_horizon();
        assert!(
            horizon >= Duration::from_secs(24 * 3600),
            "a receiver down for a day loses deliveries: horizon {horizon:?}"
        );
        // 5 s doubling to 2,560 s (ten waits, 5,115 s), then 23 waits of an hour.
        assert_eq!(horizon, Duration::from_secs(5_115 + 23 * 3_600));
        let said = in_hours_and_minutes(horizon);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for document in ["README.md", "deploy/doorstep.toml"] {
            let text = std::fs::read_to_string(root.join(document))
                .unwrap_or_else(|error| panic!("{document}: {error}"));
            assert!(
                text.contains(&said),
                "{document} should give the default retry horizon, {said}"
            );
        }
    }

    #[test]
    fn the_example_file_matches_these_settings() {
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/doorstep.toml");
        let settings = Settings::load_with_environment(Some(&example), Some(config::Map::new()))
            .unwrap_or_else(|error| panic!("deploy/doorstep.toml is valid: {error}"));
        assert_eq!(settings.server.port, DEFAULT_PORT);
        assert_eq!(settings.server.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(settings.code.timescales(), CodeTimescales::default());
        assert_eq!(
            settings.auth.api_keys_file,
            AuthSettings::default().api_keys_file
        );
        assert_eq!(settings.server.role, Role::All);
        assert_eq!(settings.metrics.port, DEFAULT_METRICS_PORT);
        assert!(settings.metrics.enabled);
        assert_eq!(
            settings.equality.audit_max_age_months,
            EqualitySettings::default().audit_max_age_months
        );
        assert_eq!(settings.console.port, DEFAULT_CONSOLE_PORT);
        assert_eq!(
            settings.console.public_url,
            ConsoleSettings::default().public_url
        );
        assert!(settings.console.validate().is_ok());
        let policy = settings
            .escalation
            .policy()
            .unwrap_or_else(|error| panic!("the example policy is valid: {error}"));
        assert_eq!(
            policy.ladder(Deadline::StageOneResponse).len(),
            5,
            "the example spells out the default ladder"
        );
        let breach = EscalationLevel::parse("level", "breach").unwrap_or_else(|e| panic!("{e}"));
        let acme = doorstep_domain::input::ContractorId::parse("id", "acme-retrofit")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!policy.recipients(&breach, &acme).is_empty());
        settings
            .notifier
            .validate()
            .unwrap_or_else(|error| panic!("the example notifier settings are valid: {error}"));
    }

    #[test]
    fn an_equality_audit_window_is_1_to_120_months() {
        assert!(EqualitySettings::default().validate().is_ok());
        for months in [0, 121] {
            let settings = EqualitySettings {
                audit_max_age_months: months,
            };
            let error = settings.validate().err().unwrap_or_default();
            assert!(error.contains("equality.audit_max_age_months"), "{error}");
        }
    }

    #[test]
    fn escalation_settings_name_the_key_at_fault() {
        let mut escalation = EscalationSettings {
            warning_time: "8 o'clock".to_owned(),
            ..EscalationSettings::default()
        };
        assert!(
            escalation
                .policy()
                .err()
                .is_some_and(|error| error.starts_with("escalation.warning_time: `8 o'clock`"))
        );
        escalation.warning_time = "07:30".to_owned();
        assert_eq!(
            escalation.policy().map(|policy| policy.warning_time()),
            Ok(chrono::NaiveTime::from_hms_opt(7, 30, 0).unwrap_or_default())
        );
        let mut escalation = EscalationSettings::default();
        escalation
            .recipients
            .insert("breach".to_owned(), vec!["not-an-address".to_owned()]);
        assert_eq!(
            escalation.policy().err().as_deref(),
            Some("escalation.recipients.breach[0]: must be an email address")
        );
        let mut escalation = EscalationSettings::default();
        escalation
            .ladders
            .insert("stage_three_response".to_owned(), default_ladder_settings());
        assert!(
            escalation
                .policy()
                .err()
                .is_some_and(|error| error.starts_with("escalation.ladders.stage_three_response"))
        );
        let webhook = |url: &str, secret: &str| WebhookSettings {
            url: url.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        };
        let mut notifier = NotifierSettings {
            webhooks: vec![webhook("ftp://x", "0123456789abcdef")],
            ..NotifierSettings::default()
        };
        assert!(
            notifier
                .validate()
                .is_err_and(|e| e.contains("webhooks[0].url"))
        );
        notifier.webhooks = vec![webhook("https://hooks.example/a", "short")];
        assert!(
            notifier
                .validate()
                .is_err_and(|e| e.contains("webhooks[0].secret"))
        );
        notifier.webhooks = vec![
            webhook("https://hooks.example/a", "0123456789abcdef"),
            webhook("https://hooks.example/a", "fedcba9876543210"),
        ];
        assert!(
            notifier
                .validate()
                .is_err_and(|e| e.contains("webhooks[1].url is listed twice"))
        );
        let notifier = NotifierSettings {
            case_url_template: Some("https://doorstep.example/complaints/".to_owned()),
            ..NotifierSettings::default()
        };
        assert!(
            notifier
                .validate()
                .is_err_and(|e| e.starts_with("notifier.case_url_template"))
        );
        let defaults = Settings::load_with_environment(None, Some(config::Map::new()))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(defaults.escalation.policy().is_ok());
        assert!(defaults.notifier.validate().is_ok());
        // Unset, emails link to the console's case page, wherever the console is published.
        assert_eq!(
            defaults.case_url_template(),
            "http://127.0.0.1:8080/complaints/{complaint_id}"
        );
        let mut published = defaults.clone();
        published.console.public_url = "https://doorstep.landlord.example/".to_owned();
        assert_eq!(
            published.case_url_template(),
            "https://doorstep.landlord.example/complaints/{complaint_id}"
        );
    }

    #[test]
    fn console_settings_name_the_key_at_fault_and_link_to_case_pages() {
        let environment = config::Map::from([
            (
                "DOORSTEP__CONSOLE__PUBLIC_URL".to_owned(),
                "https://doorstep.landlord.example/".to_owned(),
            ),
            (
                "DOORSTEP__CONSOLE__OIDC__ISSUER_URL".to_owned(),
                "https://login.example/t/v2.0".to_owned(),
            ),
            (
                "DOORSTEP__CONSOLE__OIDC__CLIENT_ID".to_owned(),
                "doorstep".to_owned(),
            ),
        ]);
        let settings = Settings::load_with_environment(None, Some(environment))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(settings.console.validate().is_ok());
        assert_eq!(
            settings.console.complaint_url("01a2"),
            "https://doorstep.landlord.example/complaints/01a2"
        );
        let oidc = settings
            .console
            .oidc
            .clone()
            .unwrap_or_else(|| panic!("oidc"));
        assert_eq!(oidc.roles_claim, "doorstep_roles");
        assert_eq!(oidc.scopes, vec!["openid", "profile"]);
        let mut wrong = settings.console.clone();
        if let Some(oidc) = wrong.oidc.as_mut() {
            oidc.role_map
                .insert("complaints-team".to_owned(), "superuser".to_owned());
        }
        assert!(
            wrong
                .validate()
                .is_err_and(|error| error.contains("console.oidc.role_map.complaints-team"))
        );
        let mut wrong = settings.console;
        wrong.public_url = "doorstep.example".to_owned();
        assert!(
            wrong
                .validate()
                .is_err_and(|error| error.contains("console.public_url"))
        );
    }

    #[test]
    fn database_passwords_never_print() {
        let settings =
            DatabaseSettings::new("postgres://doorstep:s3cret@db.internal:5432/doorstep");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("postgres://doorstep:***@db.internal:5432/doorstep"));
        assert_eq!(without_password("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn secrets_never_print() {
        let environment = config::Map::from([(
            "DOORSTEP__AUTH__JWT_HS256_SECRET".to_owned(),
            "hunter2-hunter2-hunter2-hunter2-hunter2".to_owned(),
        )]);
        let settings = Settings::load_with_environment(None, Some(environment))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(settings.auth.jwt_hs256_secret.is_some());
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let environment = config::Map::from([
            ("DOORSTEP__SERVER__PORT".to_owned(), "6001".to_owned()),
            (
                "DOORSTEP__DATABASE__URL".to_owned(),
                "sqlite:///tmp/x.db".to_owned(),
            ),
            (
                "DOORSTEP__CODE__STAGE_TWO_EXTENSION_CAP_DAYS".to_owned(),
                "15".to_owned(),
            ),
        ]);
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/doorstep.toml");
        let settings = Settings::load_with_environment(Some(&example), Some(environment))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(settings.server.port, 6001);
        assert_eq!(settings.database.url(), "sqlite:///tmp/x.db");
        assert_eq!(settings.code.timescales().stage_two_extension_cap, 15);
    }

    /// A misspelt key is an error, not a setting silently left at its default: the server
    /// would otherwise run, say, on loopback in a container because of a typo.
    #[test]
    fn unknown_keys_are_refused() {
        for (key, value) in [
            ("DOORSTEP__SERVER__HOTS", "0.0.0.0"),
            ("DOORSTEP__METRIC__PORT", "9464"),
            ("DOORSTEP__PRIVACY__MASTERKEY", "x"),
        ] {
            let loaded =
                Settings::load_from_environment(None, [(key.to_owned(), value.to_owned())]);
            match loaded {
                Err(error) => {
                    assert!(
                        error.to_string().contains("unknown field"),
                        "{key}: {error}"
                    );
                }
                Ok(_) => panic!("{key} was accepted"),
            }
        }
        let file = tempfile_with("[server]\nport = 50051\nrole = \"api\"\n[log]\njosn = true\n");
        let refused = Settings::load_with_environment(Some(file.path()), Some(config::Map::new()))
            .err()
            .map(|error| error.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|error| error.contains("josn")),
            "{refused:?}"
        );
    }

    fn tempfile_with(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .unwrap_or_else(|e| panic!("a temporary file: {e}"));
        std::fs::write(file.path(), contents).unwrap_or_else(|e| panic!("{e}"));
        file
    }

    #[test]
    fn defaults_need_no_file() {
        let settings = Settings::load_with_environment(None, Some(config::Map::new()))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(settings.database.url(), "sqlite://data/doorstep.db");
        assert_eq!(settings.server.port, DEFAULT_PORT);
        // Safe by default: reachable from this machine only, with an admin key made on first
        // start and no JWT secret built in.
        assert_eq!(settings.server.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(settings.auth.create_first_admin_key);
        assert!(settings.auth.jwt_hs256_secret.is_none());
    }

    #[test]
    fn sqlite_urls() {
        let settings = DatabaseSettings::new;
        assert_eq!(
            settings("sqlite://data/doorstep.db").sqlite_path(),
            Ok(PathBuf::from("data/doorstep.db"))
        );
        assert_eq!(
            settings("sqlite:///var/lib/doorstep/doorstep.db").sqlite_path(),
            Ok(PathBuf::from("/var/lib/doorstep/doorstep.db"))
        );
        assert!(settings("mysql://x").sqlite_path().is_err());
        assert_eq!(
            settings("sqlite:///var/lib/doorstep/doorstep.db").read_model_url(),
            Ok("sqlite:///var/lib/doorstep/doorstep.read-models.db?mode=rwc".to_owned())
        );
        assert_eq!(
            settings("postgres://db/doorstep").read_model_url(),
            Ok("postgres://db/doorstep".to_owned())
        );
    }
}
