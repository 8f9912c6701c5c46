//! The web console over HTTP, against the real server on real ports: sign-in, sessions, CSRF,
//! the policy table and contractor confinement, and the programme's figures against the API's.

use std::collections::HashMap;

use doorstep_api::v1;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use doorstep_api::v1::visit_service_client::VisitServiceClient;
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

/// Records `count` visits for a contractor in May 2026.
async fn visits(app: &TestApp, contractor_id: &str, count: usize) {
    VisitServiceClient::new(app.channel.clone())
        .record_visits(v1::RecordVisitsRequest {
            visits: (0..count)
                .map(|n| v1::Visit {
                    visit_id: format!("{contractor_id}-visit-{n}"),
                    contractor_id: contractor_id.to_owned(),
                    uprn: "100023336956".to_owned(),
                    work_order_reference: format!("WO-{n}"),
                    visit_date: "2026-05-04".to_owned(),
                })
                .collect(),
        })
        .await
        .expect("visits recorded");
}

/// Logs a complaint about a contractor's visit, acknowledges it and records `outcome`; returns
/// the complaint id and the last position.
async fn complaint(
    app: &TestApp,
    key: &str,
    contractor_id: &str,
    visit: usize,
    outcome: v1::FindingOutcome,
) -> (String, u64) {
    let mut client = app.client.clone();
    let mut request = gate_left_open(key, "2026-05-05T10:00:00Z");
    request.contractor_id = contractor_id.to_owned();
    request.visit_id = Some(format!("{contractor_id}-visit-{visit}"));
    let id = client
        .log_complaint(request)
        .await
        .expect("logged")
        .into_inner()
        .complaint_id;
    client
        .acknowledge_complaint(v1::AcknowledgeComplaintRequest {
            complaint_id: id.clone(),
            stage: v1::Stage::One as i32,
            handler: "Officer One".to_owned(),
            effective_at: Some(timestamp("2026-05-07T09:00:00Z")),
            ..Default::default()
        })
        .await
        .expect("acknowledged");
    let position = client
        .record_findings(requests::gates_finding(&id, outcome, ""))
        .await
        .expect("finding recorded")
        .into_inner()
        .position;
    (id, position)
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
        )
        .await
        .1;
    }
    last = last.max(
        complaint(
            app,
            "acme-x",
            "acme-retrofit",
            7,
            v1::FindingOutcome::NotUpheld,
        )
        .await
        .1,
    );
    for n in 0..9 {
        last = complaint(
            app,
            &format!("brick-{n}"),
            "brick-and-co",
            n,
            v1::FindingOutcome::PartlyUpheld,
        )
        .await
        .1;
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
