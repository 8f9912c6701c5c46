//! The web console in a real browser: Debian's Chromium, headless, driven by playwright-core from
//! the Node test client (`tests/clients/node/console/browser.mjs`), against the real server with
//! its console on a TCP port, signing in at a real OpenID provider (node-oidc-provider, started by
//! `console/oidc.mjs`) as a user of each role, and once with an API key.
//!
//! The programme is built through the gRPC API with the generated client: contractors with visits
//! and complaints whose findings put them in different places on the funnel, and escalations the
//! test raises by running the notifier's scheduler itself. What the pages must show is asked of
//! the API (ListContractorPerformance, GetContractorPerformance, ListEscalations) and handed to
//! the script, which checks the pages against it; what the pages did is checked through the API
//! afterwards (an escalation acknowledged in the page is acknowledged in ListEscalations, one
//! posted without a CSRF token is not). Screenshots of each page, at 1280x800 and 390 px wide, are
//! left in `target/console-screenshots/`.
//!
//! Without Chromium (`/usr/bin/chromium`) or the Node packages (`npm ci` in `tests/clients/node`)
//! the test says so loudly and skips, unless `DOORSTEP_REQUIRE_BROWSER=1` (set by `.ci/run`, which
//! installs both) makes that a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::{Datelike, Months, NaiveDate, Utc};
use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_server::clock::SystemClock;
use doorstep_tests::requests;
use doorstep_tests::{
    TestApp, console_oidc, contractor_profile, free_port, gate_left_open, notify_on_test_rounds,
    spawn_app_with,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::process::Command;

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Long enough for every page of every role, each checked by axe-core and the keyboard.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

const CLIENT_ID: &str = "doorstep-console";
const CLIENT_SECRET: &str = "browser-test-client-secret-0123456789";

/// The contractors, their visits and their upheld breaches: far apart enough per visit that the
/// funnel puts them in different places (a high alarm, a low one, within), and one with no visits
/// that is in the league table but not on the plot.
const PROGRAMME: [(&str, &str, usize, usize); 6] = [
    ("alpha-insulation", "Alpha Insulation", 1_000, 2),
    ("beta-heat", "Beta Heat Pumps", 1_000, 10),
    ("cosy-homes", "Cosy Homes Retrofit", 1_000, 28),
    ("draught-busters", "Draught Busters", 200, 2),
    ("eco-walls", "Eco Walls", 600, 0),
    ("fresh-air", "Fresh Air Ventilation", 0, 0),
];

/// The visits below which the programme page (asked with `min_visits`) and the API leave a
/// contractor unranked.
const MIN_VISITS: u64 = 100;

/// Contractor A and B: the two contractor users, each bound to one.
const CONTRACTOR_A: &str = "alpha-insulation";
const CONTRACTOR_B: &str = "beta-heat";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_owned()
}

fn node_client() -> PathBuf {
    repository_root().join("tests/clients/node")
}

/// Whether Chromium, Node and the Node packages are here. Without them the test says so loudly and
/// is skipped, unless `DOORSTEP_REQUIRE_BROWSER=1`.
fn browser_installed() -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !node {
        missing.push("node".to_owned());
    }
    for package in ["playwright-core", "oidc-provider", "axe-core"] {
        if !node_client().join("node_modules").join(package).exists() {
            missing.push(format!("{package} (npm ci in tests/clients/node)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("DOORSTEP_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "DOORSTEP_REQUIRE_BROWSER=1 but the browser test's tools are missing: {}",
        missing.join(", ")
    );
    eprintln!(
        "\n*** SKIPPED: the console browser test needs {} ***\n",
        missing.join(", ")
    );
    false
}

/// The OpenID provider, stopped when dropped (its standard input closes, and it is killed).
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user of the provider: the login typed at its form, the `doorstep_roles` claim and the
/// contractor claim.
fn users() -> Value {
    json!({
        // A group name the console's role_map turns into `officer`, as Entra ID's groups would be.
        "officer": { "name": "Olive Officer", "roles": ["complaints-team"] },
        "manager": { "name": "Mo Manager", "roles": ["manager"] },
        "admin": { "name": "Ada Admin", "roles": ["admin"] },
        "intake": { "name": "Ian Intake", "roles": ["intake"] },
        "contractor-a": { "name": "Alex of Alpha", "roles": ["contractor"], "contractor_id": CONTRACTOR_A },
        "contractor-b": { "name": "Bea of Beta", "roles": ["contractor"], "contractor_id": CONTRACTOR_B },
    })
}

/// Starts `console/oidc.mjs` with a client whose redirect URI is the console's callback, and waits
/// for the issuer URL it prints.
fn start_provider(work: &Path, console_url: &str) -> Provider {
    let config = work.join("oidc.json");
    let body = json!({
        "redirect_uri": format!("{console_url}/auth/callback"),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "users": users(),
    });
    std::fs::write(&config, body.to_string()).expect("the provider's settings are written");
    let mut child = std::process::Command::new("node")
        .current_dir(node_client())
        .arg("console/oidc.mjs")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts the OpenID provider");
    let stdout = child.stdout.take().expect("the provider's output");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the provider prints its issuer");
    let ready: Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("the provider printed no issuer ({error}): {line:?}"));
    let issuer = ready["issuer"]
        .as_str()
        .expect("the provider printed its issuer URL")
        .to_owned();
    Provider { child, issuer }
}

/// The months the pages and the API are asked about: the last twelve, this one included.
struct Period {
    from: String,
    to: String,
}

impl Period {
    fn last_twelve_months(today: NaiveDate) -> Self {
        let first = today.with_day(1).expect("the first of the month");
        let from = first - Months::new(11);
        Self {
            from: from.format("%Y-%m").to_string(),
            to: first.format("%Y-%m").to_string(),
        }
    }

    /// The page's period picker's query, with the same minimum for a rank as the API is asked.
    fn query(&self) -> String {
        format!("from={}&to={}&min_visits={MIN_VISITS}", self.from, self.to)
    }
}

/// The ids the checks need, from building the programme.
struct Built {
    /// One complaint per contractor with complaints, by contractor.
    complaints: BTreeMap<&'static str, String>,
    /// Open escalations, by contractor.
    escalations: BTreeMap<String, Vec<String>>,
}

fn day(date: NaiveDate, hour: u32) -> String {
    format!("{date}T{hour:02}:00:00Z")
}

/// Builds the programme through the gRPC API: visits 45 days ago, each upheld breach a complaint
/// about one of them, acknowledged, found upheld, most answered within the Code; one complaint
/// apiece for alpha and beta left unacknowledged for 30 working days, so the scheduler raises the
/// ladder's escalations for them.
async fn build_programme(app: &TestApp, today: NaiveDate) -> Built {
    let visited = today - chrono::Duration::days(45);
    let received = today - chrono::Duration::days(44);
    let mut visits = VisitServiceClient::new(app.channel.clone());
    for (contractor_id, name, count, _) in PROGRAMME {
        let mut profile = contractor_profile(contractor_id);
        profile.legal_name = name.to_owned();
        ContractorServiceClient::new(app.channel.clone())
            .register_contractor(v1::RegisterContractorRequest {
                contractor_id: contractor_id.to_owned(),
                profile: Some(profile),
                request_id: format!("register-{contractor_id}"),
            })
            .await
            .expect("the contractor is registered");
        let batch: Vec<v1::Visit> = (0..count)
            .map(|n| v1::Visit {
                visit_id: format!("{contractor_id}-visit-{n}"),
                contractor_id: contractor_id.to_owned(),
                uprn: "100023336956".to_owned(),
                work_order_reference: format!("WO-{contractor_id}-{n}"),
                visit_date: visited.to_string(),
            })
            .collect();
        if !batch.is_empty() {
            let answer = visits
                .record_visits(v1::RecordVisitsRequest { visits: batch })
                .await
                .expect("visits recorded")
                .into_inner();
            assert!(answer.rejected.is_empty(), "{:?}", answer.rejected);
        }
    }

    let mut client = app.client.clone();
    let mut complaints = BTreeMap::new();
    for (contractor_id, _, _, upheld) in PROGRAMME {
        for n in 0..upheld {
            let mut request = gate_left_open(
                &format!("{contractor_id}-complaint-{n}"),
                &day(received, 10),
            );
            request.contractor_id = contractor_id.to_owned();
            request.visit_id = Some(format!("{contractor_id}-visit-{n}"));
            let id = client
                .log_complaint(request)
                .await
                .expect("logged")
                .into_inner()
                .complaint_id;
            client
                .acknowledge_complaint(requests::acknowledgement(
                    &id,
                    v1::Stage::One,
                    "Officer One",
                    Some(&day(received + chrono::Duration::days(1), 9)),
                ))
                .await
                .expect("acknowledged");
            client
                .record_findings(requests::gates_finding(
                    &id,
                    v1::FindingOutcome::Upheld,
                    "The gate was left open",
                ))
                .await
                .expect("finding recorded");
            // A few are still being answered (their response deadlines pass, raising escalations);
            // the rest were answered within days.
            if n % 10 != 2 {
                client
                    .issue_response(requests::response(
                        &id,
                        "Upheld: the gate was left open",
                        Some(&day(received + chrono::Duration::days(2 + n as i64 % 5), 9)),
                    ))
                    .await
                    .expect("responded");
            }
            complaints.entry(contractor_id).or_insert(id);
        }
    }

    // Unacknowledged for weeks: the scheduler raises the ladder for these.
    for contractor_id in [CONTRACTOR_A, CONTRACTOR_B] {
        let mut request = gate_left_open(&format!("{contractor_id}-overdue"), &day(received, 11));
        request.contractor_id = contractor_id.to_owned();
        request.visit_id = Some(format!("{contractor_id}-visit-999"));
        client.log_complaint(request).await.expect("logged");
    }
    let raised = app.raise_all_due().await;
    assert!(raised >= 2, "the scheduler raised {raised} escalations");

    let listed = EscalationServiceClient::new(app.channel.clone())
        .list_escalations(v1::ListEscalationsRequest {
            open_only: true,
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("escalations listed")
        .into_inner()
        .escalations;
    let mut escalations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for escalation in listed {
        escalations
            .entry(escalation.contractor_id)
            .or_default()
            .push(escalation.escalation_id);
    }
    for contractor_id in [CONTRACTOR_A, CONTRACTOR_B] {
        assert!(
            escalations.contains_key(contractor_id),
            "no open escalation for {contractor_id}: {escalations:?}"
        );
    }
    Built {
        complaints,
        escalations,
    }
}

fn status_name(status: v1::FunnelStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("FUNNEL_STATUS_")
        .to_lowercase()
}

fn rate_values(rate: Option<&v1::Rate>) -> [Value; 3] {
    match rate {
        Some(rate) if rate.defined => [json!(rate.value), json!(rate.lower), json!(rate.upper)],
        _ => [Value::Null, Value::Null, Value::Null],
    }
}

fn proportion_values(proportion: Option<&v1::Proportion>) -> [Value; 3] {
    match proportion {
        Some(proportion) if proportion.defined => [
            json!(proportion.value),
            json!(proportion.lower),
            json!(proportion.upper),
        ],
        _ => [Value::Null, Value::Null, Value::Null],
    }
}

/// What the programme page must show, from the API: the funnel's points and the league table's
/// numbers, keyed as the console's `data-column`s are (the proto's field names).
async fn expected_programme(app: &TestApp, period: &Period, min_visits: u64) -> (Value, Value) {
    let mut performance = PerformanceServiceClient::new(app.channel.clone());
    let programme = performance
        .list_contractor_performance(v1::ListContractorPerformanceRequest {
            from_month: period.from.clone(),
            to_month: period.to.clone(),
            min_visits,
            min_position: None,
        })
        .await
        .expect("the programme's figures")
        .into_inner();
    let statuses: std::collections::BTreeSet<String> = programme
        .contractors
        .iter()
        .map(|c| status_name(c.funnel_status()))
        .collect();
    // The fixture is only evidence if the plot has points of more than one colour to get wrong.
    assert!(
        statuses.len() >= 3,
        "the programme puts contractors in only {statuses:?}"
    );

    let funnel: Vec<Value> = programme
        .contractors
        .iter()
        .filter(|c| c.funnel_status() != v1::FunnelStatus::NoExposure)
        .map(|c| {
            json!({
                "contractor_id": c.contractor_id,
                "label": c.legal_name,
                "status": status_name(c.funnel_status()),
                // What a screen reader hears of the point: its rate as shown, and its visits.
                "rate_shown": format!("{:.2}", c.upheld_per_100_visits.unwrap_or_default().value),
                "visits_shown": format!("{} visits", c.visits),
            })
        })
        .collect();

    let mut league = Vec::new();
    for standing in &programme.contractors {
        let figures = performance
            .get_contractor_performance(v1::GetContractorPerformanceRequest {
                contractor_id: standing.contractor_id.clone(),
                from_month: period.from.clone(),
                to_month: period.to.clone(),
                min_position: None,
            })
            .await
            .expect("a contractor's figures")
            .into_inner();
        let [rate, rate_lower, rate_upper] = rate_values(standing.upheld_per_100_visits.as_ref());
        let [share, share_lower, share_upper] =
            proportion_values(figures.visits_with_upheld_breach.as_ref());
        let [in_time, _, _] = proportion_values(figures.answered_within_code.as_ref());
        league.push(json!({
            "contractor_id": standing.contractor_id,
            "values": {
                "rank": standing.rank,
                "visits": standing.visits,
                "upheld_breaches": standing.upheld_breaches,
                "upheld_per_100_visits": rate,
                "upheld_per_100_visits_lower": rate_lower,
                "upheld_per_100_visits_upper": rate_upper,
                "visits_with_upheld_breach": share,
                "visits_with_upheld_breach_lower": share_lower,
                "visits_with_upheld_breach_upper": share_upper,
                "answered_within_code": in_time,
                "median_working_days_to_respond": figures.median_working_days_to_respond,
                "notifier_escalations_raised": figures.notifier_escalations_raised,
                "escalations_to_stage_two": figures.escalations_to_stage_two,
                "reopened": figures.reopened,
            },
        }));
    }
    (json!(funnel), json!(league))
}

fn page(path: &str, h1: &str, screenshot: Option<&str>) -> Value {
    json!({ "path": path, "status": 200, "h1": h1, "screenshot": screenshot })
}

/// The resident's personal data in every complaint the fixture logs (`gate_left_open`): what a
/// contractor must not see of it.
const RESIDENT: [&str; 5] = [
    "Ada Resident",
    "07700 900123",
    "ada@example.org",
    "1 Example Road",
    "Large print letters",
];

/// A page whose text must (`present_text`) or must not (`absent_text`) contain `texts`.
fn with_text(mut page: Value, key: &str, texts: &[&str]) -> Value {
    page[key] = json!(texts);
    page
}

fn refused(path: &str, status: u16) -> Value {
    json!({ "path": path, "status": status })
}

/// Every escalation, open or acknowledged, by id.
async fn all_escalations(app: &TestApp) -> BTreeMap<String, v1::Escalation> {
    EscalationServiceClient::new(app.channel.clone())
        .list_escalations(v1::ListEscalationsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("escalations listed")
        .into_inner()
        .escalations
        .into_iter()
        .map(|e| (e.escalation_id.clone(), e))
        .collect()
}

#[tokio::test]
async fn the_console_works_in_a_real_browser_for_every_role() {
    if !browser_installed() {
        return;
    }
    let work = tempfile::tempdir().expect("a temporary directory");
    let console_port = free_port();
    let console_url = format!("http://127.0.0.1:{console_port}");
    let provider = start_provider(work.path(), &console_url);

    let issuer = provider.issuer.clone();
    let app = spawn_app_with(
        move |settings, _| {
            notify_on_test_rounds(settings, "contract_manager");
            console_oidc(
                settings,
                console_port,
                &issuer,
                CLIENT_ID,
                Some(CLIENT_SECRET),
            );
            // The officer's claim is a group name, as Entra ID's would be, mapped to the role.
            if let Some(oidc) = settings.console.oidc.as_mut() {
                oidc.role_map
                    .insert("complaints-team".to_owned(), "officer".to_owned());
            }
        },
        Arc::new(SystemClock),
    )
    .await;
    let api_key = app.create_api_key("browser-test-manager", &["manager"], None);

    let today = Utc::now().date_naive();
    let period = Period::last_twelve_months(today);
    let built = build_programme(&app, today).await;
    let (funnel, league) = expected_programme(&app, &period, MIN_VISITS).await;

    let programme_path = format!("/programme?{}", period.query());
    let csv_path = format!("/programme/league.csv?{}", period.query());
    let complaint = |contractor: &str| built.complaints[contractor].clone();
    let escalation_of = |contractor: &str| built.escalations[contractor][0].clone();
    let to_acknowledge = escalation_of(CONTRACTOR_A);
    let untouched = escalation_of(CONTRACTOR_B);

    let screenshots = repository_root().join("target/console-screenshots");
    let plan = json!({
        "console_url": console_url,
        "chromium": CHROMIUM,
        "screenshots": screenshots,
        "api_key": api_key,
        "users": [
            {
                "login": "manager",
                "landing": "/programme",
                "nav": ["/programme", "/complaints", "/escalations"],
                "pages": [
                    page(&programme_path, "Programme", Some("programme")),
                    page("/contractors", "Contractors", Some("contractors")),
                    page(&format!("/contractors/{}", "cosy-homes"), "Cosy Homes Retrofit", Some("contractor")),
                    page("/complaints", "Complaints", Some("complaints")),
                    with_text(
                        page(&format!("/complaints/{}", complaint("cosy-homes")), "Complaint", Some("complaint")),
                        "present_text",
                        &RESIDENT,
                    ),
                    page("/escalations", "Escalations", Some("escalations")),
                ],
            },
            {
                "login": "officer",
                "landing": "/contractors",
                "nav": ["/complaints", "/escalations"],
                "nav_absent": ["/programme"],
                "pages": [
                    page("/complaints", "Complaints", None),
                    page("/escalations", "Escalations", None),
                ],
                "refused": [refused(&programme_path, 403)],
                // Retrying deliveries is the administrator's.
                "refused_posts": [{ "path": "/dead-letters/retry-all", "status": [403] }],
            },
            {
                "login": "admin",
                "landing": "/contractors",
                "nav_absent": ["/programme"],
                "pages": [page("/escalations", "Escalations", Some("dead-letters"))],
                "refused": [refused(&programme_path, 403)],
            },
            {
                "login": "intake",
                "landing": "/contractors",
                "nav_absent": ["/programme", "/escalations"],
                "pages": [page("/complaints", "Complaints", None)],
                "refused": [refused(&programme_path, 403), refused("/escalations", 403)],
            },
            {
                "login": "contractor-a",
                "landing": format!("/contractors/{CONTRACTOR_A}"),
                "nav_absent": ["/programme", "/escalations"],
                "pages": [
                    page(&format!("/contractors/{CONTRACTOR_A}"), "Alpha Insulation", Some("contractor-own-view")),
                    page("/complaints", "Complaints", Some("complaints-contractor-view")),
                    // A contractor sees its complaints with the resident's personal data blanked.
                    with_text(
                        page(&format!("/complaints/{}", complaint(CONTRACTOR_A)), "Complaint", Some("complaint-contractor-view")),
                        "absent_text",
                        &RESIDENT,
                    ),
                ],
                "refused": [refused(&programme_path, 403), refused("/escalations", 403)],
                "refused_posts": [
                    { "path": format!("/escalations/{untouched}/acknowledge"), "status": [403, 404] },
                    { "path": "/dead-letters/retry-all", "status": [403] },
                ],
            },
            {
                "login": "contractor-b",
                "landing": format!("/contractors/{CONTRACTOR_B}"),
                "pages": [page(&format!("/contractors/{CONTRACTOR_B}"), "Beta Heat Pumps", None)],
            },
        ],
        "programme": {
            "login": "manager",
            "path": programme_path,
            "csv_path": csv_path,
            "funnel": funnel,
            "league": league,
        },
        "contractor": {
            "login": "contractor-a",
            "visible": [format!("/contractors/{CONTRACTOR_A}"), format!("/complaints/{}", complaint(CONTRACTOR_A))],
            "not_found": [
                format!("/contractors/{CONTRACTOR_B}"),
                format!("/complaints/{}", complaint(CONTRACTOR_B)),
                "/contractors/no-such-contractor".to_owned(),
                format!("/complaints/{}", uuid::Uuid::new_v4()),
            ],
        },
        "escalations": {
            "login": "officer",
            "acknowledge_id": to_acknowledge,
            "untouched_id": untouched,
        },
    });
    let plan_path = work.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).expect("the plan is written");

    let before = all_escalations(&app).await;
    let output = tokio::time::timeout(
        BROWSER_TIMEOUT,
        Command::new("node")
            .current_dir(node_client())
            .arg("console/browser.mjs")
            .arg(&plan_path)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser finishes in time")
    .expect("node starts the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!("the browser script printed no JSON ({error}):\n{stderr}\n{stdout}")
    });
    let checks = report["checks"].as_array().map_or(0, Vec::len);
    eprintln!(
        "{checks} browser checks; screenshots in {}",
        screenshots.display()
    );
    assert!(
        output.status.success(),
        "the browser checks failed ({}):\n{stderr}",
        output.status
    );
    assert!(checks > 100, "only {checks} browser checks ran");

    // What the pages did, seen through the API.
    let after = all_escalations(&app).await;
    let acknowledged = &after[&to_acknowledge];
    assert!(
        !acknowledged.acknowledged_by.is_empty() && acknowledged.acknowledged_at.is_some(),
        "the escalation acknowledged in the page is not acknowledged in ListEscalations: {acknowledged:?}"
    );
    assert!(
        acknowledged.acknowledged_by.contains("officer")
            || acknowledged.acknowledged_by.contains("Olive"),
        "acknowledged by {:?}, not the officer who signed in",
        acknowledged.acknowledged_by
    );
    for (id, escalation) in &after {
        if *id != to_acknowledge {
            assert_eq!(
                escalation.acknowledged_by, before[id].acknowledged_by,
                "escalation {id} changed though only {to_acknowledge} was acknowledged in the page \
                 (the CSRF-less post and the contractor's post must change nothing)"
            );
        }
    }
    drop(provider);
}
