//! The web console over HTTP, against the real server on real ports: sign-in, sessions, CSRF,
//! the policy table and contractor confinement, and the programme's figures against the API's.

use std::collections::HashMap;

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::inspection_service_client::InspectionServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
use doorstep_tests::programme::{judged_complaint as complaint, record_visits as visits};
use doorstep_tests::{
    TestApp, TestClock, gate_left_open, notify_on_test_rounds, requests, spawn_app, spawn_app_with,
    timestamp,
};
use reqwest::StatusCode;

/// A browser without JavaScript: keeps cookies by name and follows no redirects, so each test
/// sees every answer.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// One answer: its status, `Location`, `Set-Cookie` headers and body.
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// The value of the hidden input `name` in the first form that has one.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').expect("a closing quote");
        self.body[start..end].to_owned()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        // reqwest is built on rustls without a default crypto provider; ring is this build's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            base: app.console_url(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| value.to_str().expect("text").to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().expect("text").to_owned())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().expect("a pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.expect("a body");
        Page {
            status,
            location,
            set_cookies,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("the console answers");
        self.answer(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("the console answers");
        self.answer(response).await
    }

    /// Signs in with `key` as a person would: opens the form, pastes the key, sends it.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let token = form.hidden("csrf_token");
        self.post("/sign-in/key", &[("api_key", key), ("csrf_token", &token)])
            .await
    }

    /// A signed-in browser with a new key of `roles`.
    async fn signed_in(app: &TestApp, roles: &[&str], contractor_id: Option<&str>) -> Self {
        let key = app.create_api_key(&roles.join("-"), roles, contractor_id);
        let mut browser = Self::new(app);
        let answer = browser.sign_in(&key).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        browser
    }
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_the_sign_in_page() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    for path in [
        "/",
        "/programme",
        "/programme/league.csv",
        "/complaints",
        "/escalations",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/sign-in"), "{path}");
    }
    let sign_in = browser.get("/sign-in").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(
        sign_in
            .body
            .contains(r#"<form id="sign-in-key" method="post" action="/sign-in/key">"#)
    );
    assert!(
        sign_in
            .body
            .contains(r#"<input id="api-key" name="api_key" type="password""#)
    );
    // No identity provider is configured: no link to one.
    assert!(!sign_in.body.contains("sign-in-oidc"));
}

#[tokio::test]
async fn the_console_stops_with_the_server() {
    let mut app = spawn_app().await;
    let address = app.console_address.expect("the console runs");
    assert_eq!(
        Browser::new(&app).get("/sign-in").await.status,
        StatusCode::OK
    );
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "nothing listens on the console's port once the server has stopped"
    );
}

#[tokio::test]
async fn an_api_key_signs_in_once_with_a_strict_http_only_cookie() {
    let app = spawn_app().await;
    let key = app.create_api_key("manager", &["manager"], None);
    let mut browser = Browser::new(&app);

    let wrong = browser.sign_in("dsk_nothing_like_a_key").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not accepted"));

    // A browser loads the form, asks for an icon, and perhaps opens the form in a second tab:
    // the form first shown still signs in.
    let first_form = browser.get("/sign-in").await;
    let favicon = browser.get("/favicon.ico").await;
    assert_ne!(favicon.status, StatusCode::SEE_OTHER);
    browser.get("/sign-in").await;
    let signed_in = browser
        .post(
            "/sign-in/key",
            &[
                ("api_key", &key),
                ("csrf_token", &first_form.hidden("csrf_token")),
            ],
        )
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.location.as_deref(), Some("/programme"));
    let session_cookie = signed_in
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("doorstep_session="))
        .expect("a session cookie");
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    // Served over plain http here: a Secure cookie would never come back.
    assert!(!session_cookie.contains("Secure"), "{session_cookie}");
    // The cookie holds a random id, not the key.
    assert!(!session_cookie.contains(&key));

    let programme = browser.get("/programme").await;
    assert_eq!(programme.status, StatusCode::OK);
    assert!(programme.body.contains("<h1>Programme</h1>"));
    let home = browser.get("/").await;
    assert_eq!(home.location.as_deref(), Some("/programme"));
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let programme = browser.get("/programme").await;
    let token = programme.hidden("csrf_token");
    let old_cookies = browser.cookies.clone();

    let signed_out = browser.post("/sign-out", &[("csrf_token", &token)]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/sign-in"));

    // The old cookie, sent again as a thief would, signs nobody in.
    browser.cookies = old_cookies;
    let again = browser.get("/programme").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location.as_deref(), Some("/sign-in"));
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let refused = browser.post("/sign-out", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = browser.post("/sign-out", &[("csrf_token", "0000")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Still signed in.
    assert_eq!(browser.get("/programme").await.status, StatusCode::OK);
    // The sign-in form is bound to the browser that loaded it.
    let mut stranger = Browser::new(&app);
    let key = app.create_api_key("officer", &["officer"], None);
    let forged = stranger
        .post(
            "/sign-in/key",
            &[("api_key", &key), ("csrf_token", "forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        !forged
            .set_cookies
            .iter()
            .any(|c| c.starts_with("doorstep_session="))
    );
}

/// The `data-column` → `data-value` pairs of each `<tr data-contractor-id>` of the table with
/// `id`, in the table's order.
fn table_rows(body: &str, id: &str) -> Vec<(String, Vec<(String, String)>)> {
    let start = body
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &body[start..start + body[start..].find("</table>").expect("the table ends")];
    let body_start = table.find("<tbody>").expect("a tbody");
    table[body_start..]
        .split("<tr data-contractor-id=\"")
        .skip(1)
        .map(|row| {
            let id = row[..row.find('"').expect("the id ends")].to_owned();
            let cells = row
                .split("data-column=\"")
                .skip(1)
                .map(|cell| {
                    let key = cell[..cell.find('"').expect("key ends")].to_owned();
                    let value_start = cell.find("data-value=\"").expect("a value") + 12;
                    let value = cell[value_start
                        ..value_start + cell[value_start..].find('"').expect("value ends")]
                        .to_owned();
                    (key, value)
                })
                .collect();
            (id, cells)
        })
        .collect()
}

fn value_of<'a>(cells: &'a [(String, String)], key: &str) -> &'a str {
    cells
        .iter()
        .find(|(column, _)| column == key)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no column {key}"))
}

/// acme: 400 visits, 6 upheld; brick: 50 visits, 9 partly upheld; tiny: 1 visit, none.
async fn small_programme(app: &TestApp) -> u64 {
    doorstep_tests::register_contractor(&app.channel, "tiny-co").await;
    visits(app, "acme-retrofit", 400).await;
    visits(app, "brick-and-co", 50).await;
    visits(app, "tiny-co", 1).await;
    let mut last = 0;
    for n in 0..6 {
        last = complaint(
            app,
            &format!("acme-{n}"),
            "acme-retrofit",
            n,
            v1::FindingOutcome::Upheld,
            None,
        )
        .await;
    }
    last = last.max(
        complaint(
            app,
            "acme-x",
            "acme-retrofit",
            7,
            v1::FindingOutcome::NotUpheld,
            None,
        )
        .await,
    );
    for n in 0..9 {
        last = complaint(
            app,
            &format!("brick-{n}"),
            "brick-and-co",
            n,
            v1::FindingOutcome::PartlyUpheld,
            None,
        )
        .await;
    }
    app.read_models_reach(last).await;
    last
}

const PERIOD: &str = "from=2026-04&to=2027-03";

#[tokio::test]
async fn the_league_table_the_funnel_and_the_csv_are_the_apis_figures() {
    let app = spawn_app().await;
    small_programme(&app).await;
    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let page = browser.get(&format!("/programme?{PERIOD}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    let mut performance = PerformanceServiceClient::new(app.channel.clone());
    let list = performance
        .list_contractor_performance(v1::ListContractorPerformanceRequest {
            from_month: "2026-04".to_owned(),
            to_month: "2027-03".to_owned(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    let rows = table_rows(&page.body, "league-table");
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let api_ids: Vec<&str> = list
        .contractors
        .iter()
        .map(|c| c.contractor_id.as_str())
        .collect();
    assert_eq!(ids, api_ids, "the table keeps the API's order");
    assert_eq!(ids.len(), 3);
    let number = |text: &str| -> f64 {
        text.parse()
            .unwrap_or_else(|_| panic!("a number: {text:?}"))
    };
    for (standing, (_, cells)) in list.contractors.iter().zip(&rows) {
        let figures = performance
            .get_contractor_performance(v1::GetContractorPerformanceRequest {
                contractor_id: standing.contractor_id.clone(),
                from_month: "2026-04".to_owned(),
                to_month: "2027-03".to_owned(),
                min_position: None,
            })
            .await
            .expect("figures")
            .into_inner();
        let rate = standing.upheld_per_100_visits.expect("a rate");
        assert_eq!(value_of(cells, "rank"), standing.rank.to_string());
        assert_eq!(value_of(cells, "visits"), standing.visits.to_string());
        assert_eq!(
            value_of(cells, "upheld_breaches"),
            standing.upheld_breaches.to_string()
        );
        assert_eq!(number(value_of(cells, "upheld_per_100_visits")), rate.value);
        assert_eq!(
            number(value_of(cells, "upheld_per_100_visits_lower")),
            rate.lower
        );
        assert_eq!(
            number(value_of(cells, "upheld_per_100_visits_upper")),
            rate.upper
        );
        let share = figures.visits_with_upheld_breach.expect("a share");
        assert_eq!(
            number(value_of(cells, "visits_with_upheld_breach")),
            share.value
        );
        assert_eq!(
            number(value_of(cells, "visits_with_upheld_breach_lower")),
            share.lower
        );
        assert_eq!(
            number(value_of(cells, "visits_with_upheld_breach_upper")),
            share.upper
        );
        let within = figures.answered_within_code.expect("answered");
        match within.defined {
            true => assert_eq!(
                number(value_of(cells, "answered_within_code")),
                within.value
            ),
            false => assert_eq!(value_of(cells, "answered_within_code"), ""),
        }
        match figures.median_working_days_to_respond {
            Some(median) => assert_eq!(
                number(value_of(cells, "median_working_days_to_respond")),
                median
            ),
            None => assert_eq!(value_of(cells, "median_working_days_to_respond"), ""),
        }
        assert_eq!(
            value_of(cells, "notifier_escalations_raised"),
            figures.notifier_escalations_raised.to_string()
        );
        assert_eq!(
            value_of(cells, "escalations_to_stage_two"),
            figures.escalations_to_stage_two.to_string()
        );
        assert_eq!(value_of(cells, "reopened"), figures.reopened.to_string());
    }
    // tiny's none in 1 visit is the lowest rate, then acme's 6 in 400.
    assert_eq!(rows[0].0, "tiny-co");
    assert_eq!(value_of(&rows[0].1, "rank"), "1");
    assert_eq!(value_of(&rows[1].1, "rank"), "2");

    // One funnel point per contractor with visits, with the API's status.
    let points = page
        .body
        .matches("<g class=\"funnel-point\" data-contractor-id=")
        .count();
    assert_eq!(points, 3);
    for standing in &list.contractors {
        let status = v1::FunnelStatus::try_from(standing.funnel_status)
            .expect("a status")
            .as_str_name()
            .trim_start_matches("FUNNEL_STATUS_")
            .to_lowercase();
        let marker = format!(
            "<g class=\"funnel-point\" data-contractor-id=\"{}\" data-status=\"{status}\" tabindex=\"0\" role=\"img\" aria-label=\"",
            standing.contractor_id
        );
        assert!(page.body.contains(&marker), "{marker}");
    }
    assert!(
        page.body.contains("alarm_high"),
        "brick's 9 in 50 is far above the average"
    );

    // The CSV is the table: its headings, then each row's values in the table's order.
    let csv = browser
        .get(&format!("/programme/league.csv?{PERIOD}"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("Contractor,Rank,Visits,Upheld breaches,Upheld per 100 visits"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, (_, cells)) in lines[1..].iter().zip(&rows) {
        let values: Vec<&str> = cells.iter().map(|(_, value)| value.as_str()).collect();
        assert_eq!(line.split(',').collect::<Vec<_>>(), values);
    }
}

#[tokio::test]
async fn a_contractor_sees_only_its_own_page_and_complaints() {
    let app = spawn_app().await;
    small_programme(&app).await;
    let (brick_complaint, _) = (
        app.client
            .clone()
            .list_complaints(v1::ListComplaintsRequest {
                contractor_id: "brick-and-co".to_owned(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .complaints[0]
            .complaint_id
            .clone(),
        (),
    );
    let mut acme = Browser::signed_in(&app, &["contractor"], Some("acme-retrofit")).await;
    let home = acme.get("/").await;
    assert_eq!(home.location.as_deref(), Some("/contractors/mine"));
    let own = acme.get("/contractors/acme-retrofit").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(own.body.contains("Open complaints"));

    let other = acme.get("/contractors/brick-and-co").await;
    let missing = acme.get("/contractors/no-such-contractor").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        other.body, missing.body,
        "another contractor's page reads as a missing one"
    );

    let other_complaint = acme.get(&format!("/complaints/{brick_complaint}")).await;
    let missing_complaint = acme
        .get("/complaints/018f2d6e-0000-7000-8000-000000000000")
        .await;
    assert_eq!(other_complaint.status, StatusCode::NOT_FOUND);
    assert_eq!(missing_complaint.status, StatusCode::NOT_FOUND);
    assert_eq!(other_complaint.body, missing_complaint.body);
    assert_eq!(other_complaint.body, missing.body);

    // Its complaints list holds its own complaints only, without residents' contact details.
    let list = acme.get("/complaints").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("acme-retrofit"));
    assert!(!list.body.contains("brick-and-co"));
    let own_complaint = list
        .body
        .split("data-complaint-id=\"")
        .nth(1)
        .expect("a row");
    let own_id = &own_complaint[..own_complaint.find('"').expect("id ends")];
    let case = acme.get(&format!("/complaints/{own_id}")).await;
    assert_eq!(case.status, StatusCode::OK);
    assert!(
        !case.body.contains("Ada Resident"),
        "residents' names are blanked"
    );
    assert!(!case.body.contains("07700 900123"));
    assert!(case.body.contains("<ol id=\"timeline\">"));
    // A contractor may not open the programme or the escalations.
    assert_eq!(acme.get("/programme").await.status, StatusCode::FORBIDDEN);
    assert_eq!(acme.get("/escalations").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn each_role_reaches_the_pages_the_policy_table_gives_it() {
    let app = spawn_app().await;
    let expectations: [(&str, [(&str, StatusCode); 4]); 4] = [
        (
            "manager",
            [
                ("/programme", StatusCode::OK),
                ("/complaints", StatusCode::OK),
                ("/escalations", StatusCode::OK),
                ("/contractors/acme-retrofit", StatusCode::OK),
            ],
        ),
        (
            "officer",
            [
                ("/programme", StatusCode::FORBIDDEN),
                ("/complaints", StatusCode::OK),
                ("/escalations", StatusCode::OK),
                ("/contractors/acme-retrofit", StatusCode::OK),
            ],
        ),
        (
            "intake",
            [
                ("/programme", StatusCode::FORBIDDEN),
                ("/complaints", StatusCode::OK),
                ("/escalations", StatusCode::FORBIDDEN),
                ("/contractors", StatusCode::OK),
            ],
        ),
        (
            "admin",
            [
                ("/programme", StatusCode::FORBIDDEN),
                ("/complaints", StatusCode::FORBIDDEN),
                ("/escalations", StatusCode::OK),
                ("/contractors", StatusCode::OK),
            ],
        ),
    ];
    for (role, pages) in expectations {
        let mut browser = Browser::signed_in(&app, &[role], None).await;
        for (path, status) in pages {
            let page = browser.get(path).await;
            assert_eq!(page.status, status, "{role} {path}");
        }
    }
    // The navigation offers exactly the pages a role may open.
    let mut officer = Browser::signed_in(&app, &["officer"], None).await;
    let page = officer.get("/complaints").await;
    assert!(page.body.contains("href=\"/escalations\""));
    assert!(!page.body.contains("href=\"/programme\""));
    // Admins retry dead letters but do not acknowledge escalations; officers the other way.
    let mut admin = Browser::signed_in(&app, &["admin"], None).await;
    let escalations = admin.get("/escalations").await;
    assert!(escalations.body.contains("Dead letters"));
    assert!(!escalations.body.contains("Open escalations"));
}

#[tokio::test]
async fn an_escalation_acknowledged_in_the_page_shows_in_list_escalations() {
    let clock = TestClock::at("2026-04-02T09:00:00Z");
    let app = spawn_app_with(
        |settings, _| notify_on_test_rounds(settings, "contract_manager"),
        clock.clone(),
    )
    .await;
    app.client
        .clone()
        .log_complaint(gate_left_open("late-1", "2026-04-02T09:00:00Z"))
        .await
        .expect("logged");
    // Unacknowledged long past its deadline: the ladder raises its steps.
    clock.set("2026-05-20T09:00:00Z".parse().expect("a time"));
    assert!(app.raise_all_due().await > 0);
    let mut escalations = EscalationServiceClient::new(app.channel.clone());
    let listed = |open_only| v1::ListEscalationsRequest {
        open_only,
        ..Default::default()
    };
    let open = escalations
        .list_escalations(listed(true))
        .await
        .expect("listed")
        .into_inner()
        .escalations;
    let target = open[0].escalation_id.clone();

    let mut browser = Browser::signed_in(&app, &["manager"], None).await;
    let page = browser.get("/escalations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(&format!("<tr data-escalation-id=\"{target}\">"))
    );
    let action = format!("/escalations/{target}/acknowledge");

    // Without the session's token: refused, and nothing changes.
    let refused = browser
        .post(&action, &[("note", "seen"), ("request_id", "r-1")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let unchanged = escalations
        .list_escalations(listed(true))
        .await
        .expect("listed")
        .into_inner()
        .escalations;
    assert_eq!(unchanged, open);

    let token = page.hidden("csrf_token");
    let done = browser
        .post(
            &action,
            &[
                ("csrf_token", &token),
                ("note", "On it"),
                ("request_id", "r-1"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let all = escalations
        .list_escalations(listed(false))
        .await
        .expect("listed")
        .into_inner()
        .escalations;
    let acknowledged = all
        .iter()
        .find(|e| e.escalation_id == target)
        .expect("still listed");
    assert!(
        acknowledged.acknowledged_by.contains("manager"),
        "{acknowledged:?}"
    );
    assert!(acknowledged.acknowledged_at.is_some());
    let after = browser.get("/escalations").await;
    assert!(
        !after
            .body
            .contains(&format!("<tr data-escalation-id=\"{target}\">"))
    );
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_limit() {
    let clock = TestClock::at("2026-04-02T09:00:00Z");
    let app = spawn_app_with(
        |settings, _| {
            settings.console.idle_minutes = 30;
            settings.console.absolute_hours = 2;
        },
        clock.clone(),
    )
    .await;
    let mut browser = Browser::signed_in(&app, &["officer"], None).await;
    // Used every 29 minutes, it stays alive...
    for _ in 0..4 {
        clock.advance(chrono::Duration::minutes(29));
        assert_eq!(browser.get("/complaints").await.status, StatusCode::OK);
    }
    // ...until two hours after sign-in, however busy.
    clock.advance(chrono::Duration::minutes(5));
    let expired = browser.get("/complaints").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(expired.location.as_deref(), Some("/sign-in"));

    let mut idle = Browser::signed_in(&app, &["officer"], None).await;
    clock.advance(chrono::Duration::minutes(29));
    assert_eq!(idle.get("/complaints").await.status, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(idle.get("/complaints").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn on_postgresql_a_session_started_on_one_replica_works_on_another() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let first = doorstep_tests::spawn_app_on_database(database.url()).await;
    let second = doorstep_tests::spawn_app_on_database(database.url()).await;
    small_programme(&first).await;
    let mut browser = Browser::signed_in(&first, &["manager"], None).await;
    let on_first = browser.get(&format!("/programme?{PERIOD}")).await;
    assert_eq!(on_first.status, StatusCode::OK);

    // The same cookie, sent to the other replica: the session lives in the shared database.
    browser.base = second.console_url();
    let on_second = browser.get(&format!("/programme?{PERIOD}")).await;
    assert_eq!(on_second.status, StatusCode::OK, "{}", on_second.body);
    assert_eq!(
        table_rows(&on_first.body, "league-table"),
        table_rows(&on_second.body, "league-table")
    );
    let rows = table_rows(&on_second.body, "league-table");
    assert_eq!(rows.len(), 3);
    let acme = rows
        .iter()
        .find(|(id, _)| id == "acme-retrofit")
        .expect("acme's row");
    assert_eq!(value_of(&acme.1, "visits"), "400");

    // Signing out on the second ends it on the first too.
    let token = on_second.hidden("csrf_token");
    let cookies = browser.cookies.clone();
    browser.post("/sign-out", &[("csrf_token", &token)]).await;
    browser.cookies = cookies;
    browser.base = first.console_url();
    assert_eq!(
        browser.get("/programme").await.status,
        StatusCode::SEE_OTHER
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 17: what we saw beside what residents told us, contracts' liaison and sign-off, and
// complaint handling by liaison lead.

const APRIL: &str = "from=2026-04&to=2026-04";

/// Every data row of the table with `id` (any `<tr>` in its `<tbody>`) as `data-column` →
/// `data-value` pairs.
fn plain_rows(body: &str, id: &str) -> Vec<Vec<(String, String)>> {
    let start = body
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &body[start..start + body[start..].find("</table>").expect("the table ends")];
    let body_start = table.find("<tbody>").expect("a tbody");
    table[body_start..]
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("data-column=\"")
                .skip(1)
                .map(|cell| {
                    let key = cell[..cell.find('"').expect("key ends")].to_owned();
                    let value_start = cell.find("data-value=\"").expect("a value") + 12;
                    let value = cell[value_start
                        ..value_start + cell[value_start..].find('"').expect("value ends")]
                        .to_owned();
                    (key, value)
                })
                .collect()
        })
        .collect()
}

/// The text of the element whose opening tag contains `marker`, up to its `</{tag}>`.
fn section<'a>(body: &'a str, marker: &str, tag: &str) -> &'a str {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"));
    let end = start
        + body[start..]
            .find(&format!("</{tag}>"))
            .expect("the element ends");
    &body[start..end]
}

/// `value` as a reader sees a share: "72.0%".
fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn number(text: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|_| panic!("a number: {text:?}"))
}

/// The same as the API's value: empty when undefined, else the same number.
fn same(shown: &str, api: Option<f64>, what: &str) {
    match api {
        Some(api) => assert_eq!(number(shown), api, "{what}"),
        None => assert_eq!(shown, "", "{what}"),
    }
}

/// A contract with `lead` ("Robin Liaison" as contact) and every equality condition accepted on
/// 1 March 2026.
fn contract_led_by(lead: v1::LiaisonLead, standards: Vec<i32>) -> v1::ContractTerms {
    v1::ContractTerms {
        reference: "RETRO-2026-01".to_owned(),
        standards,
        liaison_lead: lead as i32,
        liaison_contact_name: "Robin Liaison".to_owned(),
        equality_conditions: Some(v1::EqualityConditions {
            equality_training: true,
            equality_audits: true,
            code_of_conduct: true,
            accepted_date: "2026-03-01".to_owned(),
        }),
    }
}

async fn set_contract(app: &TestApp, contractor_id: &str, contract: v1::ContractTerms) -> u64 {
    ContractorServiceClient::new(app.channel.clone())
        .update_contractor(v1::UpdateContractorRequest {
            contractor_id: contractor_id.to_owned(),
            profile: Some(v1::ContractorProfile {
                contracts: vec![contract],
                ..doorstep_tests::contractor_profile(contractor_id)
            }),
            ..Default::default()
        })
        .await
        .expect("updated")
        .into_inner()
        .position
}

async fn sign_off(app: &TestApp, contractor_id: &str, standards: Vec<i32>) -> u64 {
    ContractorServiceClient::new(app.channel.clone())
        .record_standards_sign_off(v1::RecordStandardsSignOffRequest {
            contractor_id: contractor_id.to_owned(),
            request_id: format!("sign-off-{contractor_id}"),
            sign_off: Some(v1::StandardsSignOff {
                contract_reference: "RETRO-2026-01".to_owned(),
                champions: vec![v1::ResidentChampion {
                    reference: "RC-0042".to_owned(),
                    published_name: "Winnie Champion".to_owned(),
                }],
                signed_off_date: "2026-03-20".to_owned(),
                standards,
                comments: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("signed off")
        .into_inner()
        .position
}

/// In April 2026 (the clock is 20 April): acme's liaison is led in-house, signed off and
/// audited, with 2 complaints and 2 inspections finding most standards not met; brick's is led
/// by the contractor, its sign-off gone stale and never audited, with 1 complaint and 3
/// inspections finding everything met. 20 visits each. Returns the last position.
async fn april_with_inspections(app: &TestApp) -> u64 {
    use v1::ObservationResult::{Met, NotMet, NotObserved};
    use v1::ServiceStandard::{
        Courtesy, GatesSecured, Identification, NoSmoking, Parking, Protection, Tidiness,
    };
    let all: Vec<i32> = (1..=9).collect();
    let mut last = set_contract(
        app,
        "acme-retrofit",
        contract_led_by(v1::LiaisonLead::InHouse, all.clone()),
    )
    .await;
    last = last.max(sign_off(app, "acme-retrofit", all.clone()).await);
    last = last.max(
        set_contract(
            app,
            "brick-and-co",
            contract_led_by(v1::LiaisonLead::Contractor, all.clone()),
        )
        .await,
    );
    last = last.max(sign_off(app, "brick-and-co", all).await);
    // Brick's standards change after the sign-off: it is stale.
    last = last.max(
        set_contract(
            app,
            "brick-and-co",
            contract_led_by(v1::LiaisonLead::Contractor, (1..=8).collect()),
        )
        .await,
    );
    last = last.max(
        ContractorServiceClient::new(app.channel.clone())
            .record_equality_audit(v1::RecordEqualityAuditRequest {
                contractor_id: "acme-retrofit".to_owned(),
                request_id: "audit-acme".to_owned(),
                audit: Some(v1::EqualityAudit {
                    audit_date: "2026-04-01".to_owned(),
                    auditor: "Equality Team".to_owned(),
                    outcome: v1::AuditOutcome::Satisfactory as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("audited")
            .into_inner()
            .position,
    );
    for contractor_id in ["acme-retrofit", "brick-and-co"] {
        VisitServiceClient::new(app.channel.clone())
            .record_visits(v1::RecordVisitsRequest {
                visits: (0..20)
                    .map(|n| v1::Visit {
                        visit_id: format!("{contractor_id}-visit-{n}"),
                        contractor_id: contractor_id.to_owned(),
                        uprn: "100023336956".to_owned(),
                        work_order_reference: format!("WO-{n}"),
                        visit_date: "2026-04-02".to_owned(),
                    })
                    .collect(),
            })
            .await
            .expect("visits recorded");
    }
    let mut client = app.client.clone();
    for (key, contractor_id, visit) in [
        ("acme-a", "acme-retrofit", 0),
        ("acme-b", "acme-retrofit", 1),
        ("brick-a", "brick-and-co", 0),
    ] {
        let mut request = gate_left_open(key, "2026-04-14T10:00:00Z");
        request.contractor_id = contractor_id.to_owned();
        request.visit_id = Some(format!("{contractor_id}-visit-{visit}"));
        let id = client
            .log_complaint(request)
            .await
            .expect("logged")
            .into_inner()
            .complaint_id;
        last = last.max(
            client
                .acknowledge_complaint(v1::AcknowledgeComplaintRequest {
                    complaint_id: id,
                    stage: v1::Stage::One as i32,
                    handler: "Officer One".to_owned(),
                    effective_at: Some(timestamp("2026-04-15T09:00:00Z")),
                    ..Default::default()
                })
                .await
                .expect("acknowledged")
                .into_inner()
                .position,
        );
    }
    let mut inspections = InspectionServiceClient::new(app.channel_as(&["officer"]));
    let observe = |pairs: &[(v1::ServiceStandard, v1::ObservationResult)]| -> Vec<v1::Observation> {
        pairs
            .iter()
            .map(|(standard, result)| requests::observation(*standard, *result))
            .collect()
    };
    let acme = [
        observe(&[
            (Courtesy, NotMet),
            (Tidiness, NotMet),
            (Protection, NotMet),
            (Parking, Met),
        ]),
        observe(&[
            (GatesSecured, NotMet),
            (Identification, NotMet),
            (NoSmoking, Met),
            (Parking, NotObserved),
        ]),
    ];
    let brick = observe(&[
        (Courtesy, Met),
        (NoSmoking, Met),
        (Protection, Met),
        (Tidiness, Met),
        (Parking, Met),
        (GatesSecured, Met),
    ]);
    let seen = acme
        .into_iter()
        .map(|observations| ("acme-retrofit", observations))
        .chain((0..3).map(|_| ("brick-and-co", brick.clone())));
    for (index, (contractor_id, observations)) in seen.enumerate() {
        last = last.max(
            inspections
                .record_inspection(requests::record_inspection(
                    &format!("inspection-{index}"),
                    requests::inspection_details(
                        contractor_id,
                        "2026-04-14T08:00:00Z",
                        observations,
                    ),
                ))
                .await
                .expect("inspected")
                .into_inner()
                .position,
        );
    }
    last
}

async fn spawn_april() -> TestApp {
    spawn_app_with(
        |settings, _| settings.inspections.coverage_target_per_100_visits = 12.0,
        TestClock::at("2026-04-20T12:00:00Z"),
    )
    .await
}

async fn april_figures(
    app: &TestApp,
    contractor_id: &str,
    last: u64,
) -> v1::GetContractorPerformanceResponse {
    PerformanceServiceClient::new(app.channel_as(&["manager"]))
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: contractor_id.to_owned(),
            from_month: "2026-04".to_owned(),
            to_month: "2026-04".to_owned(),
            min_position: Some(last),
        })
        .await
        .expect("figures")
        .into_inner()
}

#[tokio::test]
async fn the_contractor_page_shows_what_we_saw_and_its_contracts_as_the_api_has_them() {
    let app = spawn_april().await;
    let last = april_with_inspections(&app).await;
    let acme = april_figures(&app, "acme-retrofit", last).await;
    let saw = acme.inspections.clone().expect("what we saw");
    assert_eq!((saw.inspections, saw.observations, saw.not_met), (2, 7, 5));
    assert!(
        saw.sources_disagree,
        "few complaints, much not met: {saw:?}"
    );
    let brick = april_figures(&app, "brick-and-co", last).await;
    assert!(
        !brick
            .inspections
            .as_ref()
            .expect("brick's")
            .sources_disagree
    );

    let mut manager = Browser::signed_in(&app, &["manager"], None).await;
    let page = manager
        .get(&format!("/contractors/acme-retrofit?{APRIL}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // Beside what residents told us, what we saw, in the API's numbers.
    assert!(page.body.contains("What residents told us"));
    let seen = section(&page.body, "id=\"what-we-saw\"", "section");
    assert!(seen.contains("What we saw: our inspections"));
    assert!(seen.contains(&format!("data-value=\"{}\"", saw.inspections)));
    let share = saw.share_met.expect("share met");
    assert!(
        seen.contains(&format!(
            "{} (95% interval {} to {})",
            percent(share.value),
            percent(share.lower),
            percent(share.upper)
        )),
        "{seen}"
    );
    assert!(seen.contains(&format!(
        "{} not met of {} observed",
        saw.not_met, saw.observations
    )));
    let coverage = saw.coverage_per_100_visits.expect("coverage");
    assert_eq!(coverage.value, 10.0, "2 inspections in 20 visits");
    assert!(seen.contains(&format!("{:.2}", coverage.value)));
    assert!(seen.contains("Target 12.00"));
    assert!(saw.coverage_below_target);
    assert!(seen.contains("Below target"), "said in words, not colour");
    assert!(
        seen.contains("The sources disagree: </strong>few complaints from residents, but our inspections found the standards met significantly less often than across the programme"),
        "{seen}"
    );
    let rows = plain_rows(seen, "inspection-standards");
    assert_eq!(rows.len(), saw.standards.len());
    for (row, standard) in rows.iter().zip(&saw.standards) {
        assert_eq!(
            value_of(row, "observations"),
            standard.observations.to_string()
        );
        assert_eq!(value_of(row, "not_met"), standard.not_met.to_string());
        let share = standard.share_met.as_ref().filter(|share| share.defined);
        same(
            value_of(row, "share_met"),
            share.map(|s| s.value),
            "share met",
        );
        same(
            value_of(row, "share_met_lower"),
            share.map(|s| s.lower),
            "lower",
        );
        same(
            value_of(row, "share_met_upper"),
            share.map(|s| s.upper),
            "upper",
        );
    }
    assert!(seen.contains("<th scope=\"col\" data-column=\"not_met\""));
    // The contract: who leads liaison, the sign-off, the equality conditions; audited lately.
    assert!(
        page.body.contains(
            "Resident liaison led in-house (our liaison officers); contact: Robin Liaison"
        )
    );
    assert!(
        page.body
            .contains("Signed off by resident champions on 20 Mar 2026")
    );
    assert!(page.body.contains(
        "Equality conditions accepted on 1 Mar 2026: equality and diversity training, equality audits, the code of conduct"
    ));
    assert!(
        !page.body.contains("Equality audit overdue"),
        "audited on 1 April"
    );

    // Brick's sign-off went stale when its standards changed; it was never audited; its
    // inspections agree with its complaints.
    let page = manager
        .get(&format!("/contractors/brick-and-co?{APRIL}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("Resident liaison led by the contractor; contact: Robin Liaison")
    );
    assert!(!page.body.contains("Signed off by resident champions on"));
    assert!(
        page.body
            .contains("Not signed off: the standards changed after the resident champions")
            && page.body.contains("sign-off on 20 Mar 2026"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Equality audit overdue"));
    assert!(!page.body.contains("The sources disagree"));

    // The registry says the same in a column each (once its read model has every write).
    ContractorServiceClient::new(app.channel.clone())
        .list_contractors(v1::ListContractorsRequest {
            min_position: Some(last),
            ..Default::default()
        })
        .await
        .expect("listed");
    let index = manager.get("/contractors").await;
    let registry = table_rows(&index.body, "contractors");
    let registered: HashMap<&str, &[(String, String)]> = registry
        .iter()
        .map(|(id, cells)| (id.as_str(), cells.as_slice()))
        .collect();
    assert_eq!(
        value_of(registered["brick-and-co"], "contracts_not_signed_off"),
        "RETRO-2026-01"
    );
    assert_eq!(
        value_of(registered["acme-retrofit"], "contracts_not_signed_off"),
        ""
    );
    assert_eq!(
        value_of(registered["brick-and-co"], "equality_audit_overdue"),
        "true"
    );
    assert_eq!(
        value_of(registered["acme-retrofit"], "equality_audit_overdue"),
        "false"
    );
    assert!(index.body.contains(">Overdue</td>") && index.body.contains(">All signed off</td>"));

    // A contractor sees what we saw of its own work, and no contract register (GetContractor is
    // not its to call); another's page is missing.
    let mut own = Browser::signed_in(&app, &["contractor"], Some("acme-retrofit")).await;
    let page = own
        .get(&format!("/contractors/acme-retrofit?{APRIL}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("What we saw: our inspections"));
    assert!(page.body.contains("The sources disagree"));
    assert!(!page.body.contains("Resident liaison led"));
    assert!(!page.body.contains("Signed off by resident champions"));
    assert_eq!(
        own.get(&format!("/contractors/brick-and-co?{APRIL}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_programme_compares_liaison_leads_and_marks_disagreeing_sources_as_the_api_does() {
    let app = spawn_april().await;
    let last = april_with_inspections(&app).await;
    let compared = PerformanceServiceClient::new(app.channel_as(&["manager"]))
        .compare_liaison_leads(v1::CompareLiaisonLeadsRequest {
            from_month: "2026-04".to_owned(),
            to_month: "2026-04".to_owned(),
            min_position: Some(last),
        })
        .await
        .expect("compared")
        .into_inner();
    let _ = april_figures(&app, "acme-retrofit", last).await;

    let mut manager = Browser::signed_in(&app, &["manager"], None).await;
    let page = manager.get(&format!("/programme?{APRIL}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<h2>Who leads resident liaison</h2>"));
    let rows = plain_rows(&page.body, "liaison-leads");
    let leads: Vec<&str> = rows
        .iter()
        .map(|row| value_of(row, "liaison_lead"))
        .collect();
    assert_eq!(leads, ["in_house", "contractor", "unknown"]);
    // By hand: acme's 2 complaints in-house, brick's 1 with the contractor.
    let complaints: Vec<&str> = rows.iter().map(|row| value_of(row, "complaints")).collect();
    assert_eq!(complaints, ["2", "1", "0"]);
    assert_eq!(rows.len(), compared.leads.len());
    for (row, lead) in rows.iter().zip(&compared.leads) {
        let what = format!("lead {}", lead.liaison_lead);
        assert_eq!(value_of(row, "contractors"), lead.contractors.to_string());
        assert_eq!(value_of(row, "complaints"), lead.complaints.to_string());
        let within = lead.answered_within_code.as_ref().filter(|s| s.defined);
        same(
            value_of(row, "answered_within_code"),
            within.map(|s| s.value),
            &what,
        );
        same(
            value_of(row, "answered_within_code_lower"),
            within.map(|s| s.lower),
            &what,
        );
        same(
            value_of(row, "answered_within_code_upper"),
            within.map(|s| s.upper),
            &what,
        );
        same(
            value_of(row, "median_working_days_to_acknowledge"),
            lead.median_working_days_to_acknowledge,
            &what,
        );
        same(
            value_of(row, "median_working_days_to_respond"),
            lead.median_working_days_to_respond,
            &what,
        );
        same(
            value_of(row, "escalated_to_stage_two"),
            lead.escalated_to_stage_two
                .as_ref()
                .filter(|s| s.defined)
                .map(|s| s.value),
            &what,
        );
        assert_eq!(
            value_of(row, "notifier_escalations_past_deadline"),
            lead.notifier_escalations_past_deadline.to_string()
        );
        let past = lead
            .notifier_escalations_past_deadline_per_100_complaints
            .as_ref()
            .filter(|r| r.defined);
        same(
            value_of(row, "notifier_escalations_past_deadline_per_100_complaints"),
            past.map(|r| r.value),
            &what,
        );
        same(
            value_of(
                row,
                "notifier_escalations_past_deadline_per_100_complaints_upper",
            ),
            past.map(|r| r.upper),
            &what,
        );
    }
    let in_house = section(&page.body, "<table id=\"liaison-leads\"", "table");
    assert!(in_house.contains("<caption>"));
    assert!(in_house.contains(
        "<th scope=\"row\" data-column=\"liaison_lead\" data-value=\"in_house\">In-house</th>"
    ));

    // Its CSV is the table.
    let csv = manager
        .get(&format!("/programme/liaison-leads.csv?{APRIL}"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("Liaison lead,Contractors,Complaints,Answered within the Code"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(&rows) {
        let values: Vec<&str> = row.iter().map(|(_, value)| value.as_str()).collect();
        assert_eq!(line.split(',').collect::<Vec<_>>(), values);
    }

    // The league table marks whose inspections disagree with their complaints, in words.
    let league = table_rows(&page.body, "league-table");
    let marks: HashMap<&str, &str> = league
        .iter()
        .map(|(id, cells)| (id.as_str(), value_of(cells, "sources_disagree")))
        .collect();
    assert_eq!(marks["acme-retrofit"], "true");
    assert_eq!(marks["brick-and-co"], "false");
    let note = section(&page.body, "id=\"sources-disagree\"", "div");
    assert!(
        note.contains("disagrees with what residents told us"),
        "{note}"
    );
    assert!(note.contains("/contractors/acme-retrofit"));
    assert!(!note.contains("/contractors/brick-and-co"));
    let league_csv = manager.get(&format!("/programme/league.csv?{APRIL}")).await;
    assert!(
        league_csv
            .body
            .lines()
            .next()
            .is_some_and(|heading| heading.ends_with(",Inspections disagree with complaints")),
        "{}",
        league_csv.body
    );

    // Only managers may compare liaison leads (CompareLiaisonLeads' policy line).
    let mut officer = Browser::signed_in(&app, &["officer"], None).await;
    assert_eq!(
        officer
            .get(&format!("/programme/liaison-leads.csv?{APRIL}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}
