//! `doorstep report …`: performance reports for managers without a gRPC client. Talks to a
//! running server over gRPC and prints a table for a terminal, CSV for a spreadsheet, or JSON.

use doorstep_api::v1;
use doorstep_api::v1::performance_service_client::PerformanceServiceClient;
use serde::Serialize;

use crate::auth::client::{AuthenticatedChannel, CallerCredential};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot reach the server at {address}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Not a `source`: the message is the refusal, said once in the flags' words.
    #[error("the server refused the report: {}", in_flags(.0))]
    Refused(tonic::Status),
    #[error("cannot write the report")]
    Csv(#[from] csv::Error),
    #[error("cannot write the report")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the report")]
    Io(#[from] std::io::Error),
}

impl From<tonic::Status> for ReportError {
    fn from(status: tonic::Status) -> Self {
        Self::Refused(status)
    }
}

/// The request fields a report's flags fill, and the flags, so that a refusal names what the
/// person typed (`--from`), not the server's field (`from_month`).
const FLAGS: &[(&str, &str)] = &[
    ("from_month", "--from"),
    ("to_month", "--to"),
    ("min_visits", "--min-visits"),
    ("reporting_year", "--year"),
    ("homes", "--homes"),
    ("contractor_id", "the contractor id"),
];

/// A refusal's message with the request's field names put as the command line's flags.
fn in_flags(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    for (field, flag) in FLAGS {
        message = message.replace(field, flag);
    }
    if message.is_empty() {
        return format!("{:?}", status.code());
    }
    message
}

/// `n thing` or `n things`.
fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A rate with its 95% interval, for JSON; absent (null) where the rate is not defined.
#[derive(Debug, Serialize)]
pub struct RateFigure {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

fn rate_figure(rate: Option<&v1::Rate>) -> Option<RateFigure> {
    rate.filter(|rate| rate.defined).map(|rate| RateFigure {
        value: rate.value,
        lower: rate.lower,
        upper: rate.upper,
    })
}

/// A proportion (a share of a total) with its 95% interval, for JSON.
#[derive(Debug, Serialize)]
pub struct ProportionFigure {
    pub count: u64,
    pub total: u64,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

fn proportion_figure(proportion: Option<&v1::Proportion>) -> Option<ProportionFigure> {
    proportion.filter(|p| p.defined).map(|p| ProportionFigure {
        count: p.count,
        total: p.total,
        value: p.value,
        lower: p.lower,
        upper: p.upper,
    })
}

/// `doorstep report contractors --format json`.
#[derive(Debug, Serialize)]
pub struct ContractorsJson {
    pub from_month: String,
    pub to_month: String,
    pub min_visits: u64,
    pub programme_visits: u64,
    pub programme_upheld_breaches: u64,
    pub programme_upheld_per_100_visits: Option<RateFigure>,
    pub contractors: Vec<ContractorStandingJson>,
}

#[derive(Debug, Serialize)]
pub struct ContractorStandingJson {
    /// Absent for a contractor with too few visits to rank.
    pub rank: Option<u32>,
    pub contractor_id: String,
    pub legal_name: String,
    pub visits: u64,
    pub upheld_breaches: u64,
    pub upheld_per_100_visits: Option<RateFigure>,
    /// `within`, `alert_high`, `alert_low`, `alarm_high`, `alarm_low`, `no_exposure`.
    pub funnel_status: Option<String>,
}

/// `doorstep report contractor <id> --format json`.
#[derive(Debug, Serialize)]
pub struct ContractorJson {
    pub contractor_id: String,
    pub legal_name: String,
    pub from_month: String,
    pub to_month: String,
    pub visits: u64,
    pub complaints: u64,
    pub reported_breaches: u64,
    pub upheld_breaches: u64,
    pub reported_per_100_visits: Option<RateFigure>,
    pub upheld_per_100_visits: Option<RateFigure>,
    pub standards: Vec<StandardJson>,
    pub visits_with_upheld_breach: Option<ProportionFigure>,
    pub answered_within_code: Option<ProportionFigure>,
    pub median_working_days_to_acknowledge: Option<f64>,
    pub median_working_days_to_respond: Option<f64>,
    pub escalations_to_stage_two: u64,
    pub reopened: u64,
    pub notifier_escalations_raised: u64,
    pub notifier_escalations_past_deadline: u64,
    /// Absent for a contractor never audited.
    pub equality_audit: Option<EqualityAuditJson>,
}

#[derive(Debug, Serialize)]
pub struct StandardJson {
    /// The standard in snake case, e.g. `gates_secured`.
    pub standard: String,
    pub reported: u64,
    pub upheld: u64,
    pub partly_upheld: u64,
    pub not_upheld: u64,
    pub pending: u64,
    pub upheld_per_100_visits: Option<RateFigure>,
}

#[derive(Debug, Serialize)]
pub struct EqualityAuditJson {
    pub latest_audit_date: String,
    /// The outcome in snake case, e.g. `met`.
    pub latest_outcome: String,
    /// Absent when every requirement was met.
    pub requirements_not_met: Option<String>,
}

/// `doorstep report handling --format json`.
#[derive(Debug, Serialize)]
pub struct HandlingJson {
    pub reporting_year: u32,
    pub from_date: String,
    pub to_date: String,
    pub homes: u64,
    pub stage_one: StageHandlingJson,
    pub stage_two: StageHandlingJson,
    pub extensions_count_as_within_code: bool,
}

#[derive(Debug, Serialize)]
pub struct StageHandlingJson {
    pub received: u64,
    pub per_1000_homes: f64,
    pub responded: u64,
    pub responded_within_code: u64,
    /// Absent when nothing was responded to.
    pub percent_within_code: Option<f64>,
}

fn stage_handling(stage: Option<&v1::StageHandling>) -> StageHandlingJson {
    let stage = stage.cloned().unwrap_or_default();
    StageHandlingJson {
        received: stage.received,
        per_1000_homes: stage.per_1000_homes,
        responded: stage.responded,
        responded_within_code: stage.responded_within_code,
        percent_within_code: stage.percent_within_code,
    }
}

/// An enum value's protobuf name without its prefix, in snake case: `FUNNEL_STATUS_ALERT_HIGH`
/// → `alert_high`.
fn snake(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// A table of strings: what every report becomes before it is printed.
#[derive(Debug)]
struct Report {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Lines shown under a table (notes on the figures).
    notes: Vec<String>,
}

impl Report {
    /// Prints the table, or its CSV, or `typed` as JSON: typed values, numbers as numbers and
    /// absent figures as null, never the table's display strings.
    fn print(
        &self,
        typed: &impl Serialize,
        format: ReportFormat,
        out: &mut impl std::io::Write,
    ) -> Result<(), ReportError> {
        match format {
            ReportFormat::Table => {
                let mut table = comfy_table::Table::new();
                table
                    .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
                    .set_header(self.columns.clone());
                for row in &self.rows {
                    table.add_row(row.clone());
                }
                writeln!(out, "{}\n{table}", self.title)?;
                for note in &self.notes {
                    writeln!(out, "{note}")?;
                }
            }
            ReportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(&self.columns)?;
                for row in &self.rows {
                    writer.write_record(row)?;
                }
                writer.flush()?;
            }
            ReportFormat::Json => {
                serde_json::to_writer_pretty(&mut *out, typed)?;
                writeln!(out)?;
            }
        }
        Ok(())
    }
}

/// The server a report asks, and the credential it asks with (a manager's).
#[derive(Debug, Clone)]
pub struct ReportServer {
    /// `http://…`, or `https://…` for a server with TLS.
    pub address: String,
    pub credential: CallerCredential,
    /// The CA certificate (PEM) an `https://` server's certificate chains to.
    pub ca_certificate: Option<Vec<u8>>,
}

async fn client(
    server: &ReportServer,
) -> Result<PerformanceServiceClient<AuthenticatedChannel>, ReportError> {
    let connect_error = |source| ReportError::Connect {
        address: server.address.clone(),
        source,
    };
    let mut endpoint =
        tonic::transport::Endpoint::from_shared(server.address.clone()).map_err(connect_error)?;
    if let Some(ca) = &server.ca_certificate {
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )
            .map_err(connect_error)?;
    }
    let channel = endpoint.connect().await.map_err(connect_error)?;
    Ok(PerformanceServiceClient::new(
        server.credential.clone().attach(channel),
    ))
}

fn rate(rate: Option<&v1::Rate>) -> [String; 2] {
    match rate {
        Some(rate) if rate.defined => [
            format!("{:.2}", rate.value),
            format!("{:.2}–{:.2}", rate.lower, rate.upper),
        ],
        _ => ["–".to_owned(), "–".to_owned()],
    }
}

fn proportion(proportion: Option<&v1::Proportion>) -> String {
    match proportion {
        Some(p) if p.defined => format!(
            "{:.1}% ({:.1}–{:.1}%) of {}",
            p.value * 100.0,
            p.lower * 100.0,
            p.upper * 100.0,
            p.total
        ),
        _ => "–".to_owned(),
    }
}

fn funnel(status: i32) -> &'static str {
    match v1::FunnelStatus::try_from(status) {
        Ok(v1::FunnelStatus::Within) => "within",
        Ok(v1::FunnelStatus::AlertHigh) => "ALERT (high)",
        Ok(v1::FunnelStatus::AlertLow) => "alert (low)",
        Ok(v1::FunnelStatus::AlarmHigh) => "ALARM (high)",
        Ok(v1::FunnelStatus::AlarmLow) => "alarm (low)",
        Ok(v1::FunnelStatus::NoExposure) => "no visits",
        _ => "",
    }
}

/// A standard's name; one this build does not know (a newer server's) is shown as its number,
/// not hidden.
fn standard_name(value: i32) -> String {
    v1::ServiceStandard::try_from(value).map_or_else(
        |_| format!("standard {value}"),
        |s| {
            s.as_str_name()
                .trim_start_matches("SERVICE_STANDARD_")
                .to_owned()
        },
    )
}

/// Every contractor against the programme average.
pub async fn contractors(
    server: &ReportServer,
    from_month: &str,
    to_month: &str,
    min_visits: u64,
    format: ReportFormat,
    out: &mut impl std::io::Write,
) -> Result<(), ReportError> {
    let answer = client(server)
        .await?
        .list_contractor_performance(v1::ListContractorPerformanceRequest {
            from_month: from_month.to_owned(),
            to_month: to_month.to_owned(),
            min_visits,
            min_position: None,
        })
        .await?
        .into_inner();
    let [average, average_interval] = rate(answer.programme_upheld_per_100_visits.as_ref());
    let report = Report {
        title: format!(
            "Contractor performance {from_month} to {to_month}: programme average {average} upheld breaches per 100 visits ({average_interval}), {}",
            count(answer.programme_visits, "visit")
        ),
        columns: vec![
            "rank",
            "contractor",
            "name",
            "visits",
            "upheld breaches",
            "per 100 visits",
            "95% interval",
            "funnel",
        ],
        rows: answer
            .contractors
            .iter()
            .map(|c| {
                let [value, interval] = rate(c.upheld_per_100_visits.as_ref());
                vec![
                    if c.rank == 0 {
                        "–".to_owned()
                    } else {
                        c.rank.to_string()
                    },
                    c.contractor_id.clone(),
                    c.legal_name.clone(),
                    c.visits.to_string(),
                    c.upheld_breaches.to_string(),
                    value,
                    interval,
                    funnel(c.funnel_status).to_owned(),
                ]
            })
            .collect(),
        notes: vec![format!(
            "Only contractors with at least {} are ranked; 1 is the lowest rate.",
            count(min_visits, "visit")
        )],
    };
    let typed = ContractorsJson {
        from_month: from_month.to_owned(),
        to_month: to_month.to_owned(),
        min_visits,
        programme_visits: answer.programme_visits,
        programme_upheld_breaches: answer.programme_upheld_breaches,
        programme_upheld_per_100_visits: rate_figure(
            answer.programme_upheld_per_100_visits.as_ref(),
        ),
        contractors: answer
            .contractors
            .iter()
            .map(|c| ContractorStandingJson {
                rank: (c.rank != 0).then_some(c.rank),
                contractor_id: c.contractor_id.clone(),
                legal_name: c.legal_name.clone(),
                visits: c.visits,
                upheld_breaches: c.upheld_breaches,
                upheld_per_100_visits: rate_figure(c.upheld_per_100_visits.as_ref()),
                funnel_status: v1::FunnelStatus::try_from(c.funnel_status)
                    .ok()
                    .filter(|status| *status != v1::FunnelStatus::Unspecified)
                    .map(|status| snake(status.as_str_name(), "FUNNEL_STATUS_")),
            })
            .collect(),
    };
    report.print(&typed, format, out)
}

/// One contractor in detail.
pub async fn contractor(
    server: &ReportServer,
    contractor_id: &str,
    from_month: &str,
    to_month: &str,
    format: ReportFormat,
    out: &mut impl std::io::Write,
) -> Result<(), ReportError> {
    let answer = client(server)
        .await?
        .get_contractor_performance(v1::GetContractorPerformanceRequest {
            contractor_id: contractor_id.to_owned(),
            from_month: from_month.to_owned(),
            to_month: to_month.to_owned(),
            min_position: None,
        })
        .await?
        .into_inner();
    let [reported, reported_interval] = rate(answer.reported_per_100_visits.as_ref());
    let report = Report {
        title: format!(
            "{} ({}) {from_month} to {to_month}: {}, {}; reported {reported} per 100 visits ({reported_interval})",
            answer.legal_name,
            answer.contractor_id,
            count(answer.visits, "visit"),
            count(answer.complaints, "complaint")
        ),
        columns: vec![
            "standard",
            "reported",
            "upheld",
            "partly upheld",
            "not upheld",
            "pending",
            "upheld per 100 visits",
            "95% interval",
        ],
        rows: contractor_rows(&answer),
        notes: contractor_notes(&answer),
    };
    report.print(&contractor_json(answer), format, out)
}

fn contractor_json(answer: v1::GetContractorPerformanceResponse) -> ContractorJson {
    let equality_audit = answer
        .equality_audit
        .as_ref()
        .filter(|audit| audit.audited)
        .map(|audit| EqualityAuditJson {
            latest_audit_date: audit.latest_audit_date.clone(),
            latest_outcome: v1::AuditOutcome::try_from(audit.latest_outcome).map_or_else(
                |_| format!("outcome_{}", audit.latest_outcome),
                |outcome| snake(outcome.as_str_name(), "AUDIT_OUTCOME_"),
            ),
            requirements_not_met: Some(audit.requirements_not_met.clone())
                .filter(|not_met| !not_met.is_empty()),
        });
    ContractorJson {
        standards: answer
            .standards
            .iter()
            .map(|s| StandardJson {
                standard: standard_name(s.standard).to_ascii_lowercase(),
                reported: s.reported,
                upheld: s.upheld,
                partly_upheld: s.partly_upheld,
                not_upheld: s.not_upheld,
                pending: s.pending,
                upheld_per_100_visits: rate_figure(s.upheld_per_100_visits.as_ref()),
            })
            .collect(),
        reported_per_100_visits: rate_figure(answer.reported_per_100_visits.as_ref()),
        upheld_per_100_visits: rate_figure(answer.upheld_per_100_visits.as_ref()),
        visits_with_upheld_breach: proportion_figure(answer.visits_with_upheld_breach.as_ref()),
        answered_within_code: proportion_figure(answer.answered_within_code.as_ref()),
        equality_audit,
        contractor_id: answer.contractor_id,
        legal_name: answer.legal_name,
        from_month: answer.from_month,
        to_month: answer.to_month,
        visits: answer.visits,
        complaints: answer.complaints,
        reported_breaches: answer.reported_breaches,
        upheld_breaches: answer.upheld_breaches,
        median_working_days_to_acknowledge: answer.median_working_days_to_acknowledge,
        median_working_days_to_respond: answer.median_working_days_to_respond,
        escalations_to_stage_two: answer.escalations_to_stage_two,
        reopened: answer.reopened,
        notifier_escalations_raised: answer.notifier_escalations_raised,
        notifier_escalations_past_deadline: answer.notifier_escalations_past_deadline,
    }
}

/// The contractor's totals, then one row per service standard.
fn contractor_rows(answer: &v1::GetContractorPerformanceResponse) -> Vec<Vec<String>> {
    let [upheld, upheld_interval] = rate(answer.upheld_per_100_visits.as_ref());
    let mut rows = vec![vec![
        "ALL".to_owned(),
        answer.reported_breaches.to_string(),
        answer.upheld_breaches.to_string(),
        String::new(),
        String::new(),
        String::new(),
        upheld,
        upheld_interval,
    ]];
    rows.extend(answer.standards.iter().map(|s| {
        let [value, interval] = rate(s.upheld_per_100_visits.as_ref());
        vec![
            standard_name(s.standard),
            s.reported.to_string(),
            s.upheld.to_string(),
            s.partly_upheld.to_string(),
            s.not_upheld.to_string(),
            s.pending.to_string(),
            value,
            interval,
        ]
    }));
    rows
}

fn contractor_notes(answer: &v1::GetContractorPerformanceResponse) -> Vec<String> {
    let days = |value: Option<f64>| value.map_or("–".to_owned(), |d| format!("{d:.1}"));
    vec![
        format!(
            "Visits with an upheld breach: {}",
            proportion(answer.visits_with_upheld_breach.as_ref())
        ),
        format!(
            "Answered within the Code: {}",
            proportion(answer.answered_within_code.as_ref())
        ),
        format!(
            "Median working days to acknowledge {}, to respond {}",
            days(answer.median_working_days_to_acknowledge),
            days(answer.median_working_days_to_respond)
        ),
        format!(
            "Escalated to stage 2: {}; reopened: {}",
            answer.escalations_to_stage_two, answer.reopened
        ),
        format!(
            "Deadline escalations raised: {} ({} after a deadline had passed)",
            answer.notifier_escalations_raised, answer.notifier_escalations_past_deadline
        ),
        audit_line(answer.equality_audit.as_ref()),
    ]
}

fn audit_line(audit: Option<&v1::EqualityAuditStatus>) -> String {
    let Some(audit) = audit.filter(|audit| audit.audited) else {
        return "Equality audit: never audited".to_owned();
    };
    // An outcome this build does not know (a newer server's) is shown as its number, not hidden.
    let outcome = v1::AuditOutcome::try_from(audit.latest_outcome).map_or_else(
        |_| format!("outcome {}", audit.latest_outcome),
        |outcome| {
            outcome
                .as_str_name()
                .trim_start_matches("AUDIT_OUTCOME_")
                .to_owned()
        },
    );
    let not_met = if audit.requirements_not_met.is_empty() {
        String::new()
    } else {
        format!("; not met: {}", audit.requirements_not_met)
    };
    format!(
        "Equality audit: {outcome} on {}{not_met}",
        audit.latest_audit_date
    )
}

/// The regulator's CH01 and CH02 for a reporting year.
pub async fn handling(
    server: &ReportServer,
    reporting_year: u32,
    homes: u64,
    format: ReportFormat,
    out: &mut impl std::io::Write,
) -> Result<(), ReportError> {
    let answer = client(server)
        .await?
        .get_complaint_handling_report(v1::GetComplaintHandlingReportRequest {
            reporting_year,
            homes,
            min_position: None,
        })
        .await?
        .into_inner();
    let row = |label: &str, stage: Option<&v1::StageHandling>| {
        let stage = stage.cloned().unwrap_or_default();
        vec![
            label.to_owned(),
            stage.received.to_string(),
            format!("{:.1}", stage.per_1000_homes),
            stage.responded.to_string(),
            stage.responded_within_code.to_string(),
            stage
                .percent_within_code
                .map_or("–".to_owned(), |p| format!("{p:.1}")),
        ]
    };
    let report = Report {
        title: format!(
            "Complaint handling {} to {} ({})",
            answer.from_date,
            answer.to_date,
            count(answer.homes, "home")
        ),
        columns: vec![
            "stage",
            "received",
            "CH01 per 1,000 homes",
            "responded",
            "within Code",
            "CH02 %",
        ],
        rows: vec![
            row("stage 1", answer.stage_one.as_ref()),
            row("stage 2", answer.stage_two.as_ref()),
        ],
        notes: vec![format!(
            "Responses inside an agreed extension {} as within the Code.",
            if answer.extensions_count_as_within_code {
                "count"
            } else {
                "do not count"
            }
        )],
    };
    let typed = HandlingJson {
        reporting_year: answer.reporting_year,
        from_date: answer.from_date.clone(),
        to_date: answer.to_date.clone(),
        homes: answer.homes,
        stage_one: stage_handling(answer.stage_one.as_ref()),
        stage_two: stage_handling(answer.stage_two.as_ref()),
        extensions_count_as_within_code: answer.extensions_count_as_within_code,
    };
    report.print(&typed, format, out)
}

/// A liaison lead's name in a report; one this build does not know is shown as its number.
fn lead_name(value: i32) -> String {
    match v1::LiaisonLead::try_from(value) {
        Ok(v1::LiaisonLead::InHouse) => "in-house".to_owned(),
        Ok(v1::LiaisonLead::Contractor) => "contractor".to_owned(),
        Ok(v1::LiaisonLead::Unspecified) => "unknown".to_owned(),
        Err(_) => format!("lead {value}"),
    }
}

/// Complaint handling grouped by who leads resident liaison.
pub async fn liaison(
    server: &ReportServer,
    from_month: &str,
    to_month: &str,
    format: ReportFormat,
    out: &mut impl std::io::Write,
) -> Result<(), ReportError> {
    let answer = client(server)
        .await?
        .compare_liaison_leads(v1::CompareLiaisonLeadsRequest {
            from_month: from_month.to_owned(),
            to_month: to_month.to_owned(),
            min_position: None,
        })
        .await?
        .into_inner();
    let days = |value: Option<f64>| value.map_or("–".to_owned(), |d| format!("{d:.1}"));
    let report = Report {
        title: format!(
            "Complaint handling by liaison lead {} to {}",
            answer.from_month, answer.to_month
        ),
        columns: vec![
            "liaison lead",
            "contractors",
            "complaints",
            "answered within Code",
            "median days to acknowledge",
            "median days to respond",
            "escalated to stage 2",
            "deadline escalations",
            "past deadline",
            "past deadline per 100 complaints",
            "95% interval",
        ],
        rows: answer
            .leads
            .iter()
            .map(|lead| {
                let [value, interval] = rate(
                    lead.notifier_escalations_past_deadline_per_100_complaints
                        .as_ref(),
                );
                vec![
                    lead_name(lead.liaison_lead),
                    lead.contractors.to_string(),
                    lead.complaints.to_string(),
                    proportion(lead.answered_within_code.as_ref()),
                    days(lead.median_working_days_to_acknowledge),
                    days(lead.median_working_days_to_respond),
                    proportion(lead.escalated_to_stage_two.as_ref()),
                    lead.notifier_escalations_raised.to_string(),
                    lead.notifier_escalations_past_deadline.to_string(),
                    value,
                    interval,
                ]
            })
            .collect(),
        notes: vec![
            "A complaint counts for the lead every contract of its contractor named when it was \
             received; unknown: no contract, a contract without a lead, or contracts with \
             different leads."
                .to_owned(),
        ],
    };
    let typed = LiaisonJson {
        from_month: answer.from_month.clone(),
        to_month: answer.to_month.clone(),
        leads: answer
            .leads
            .iter()
            .map(|lead| LeadHandlingJson {
                liaison_lead: snake_lead(lead.liaison_lead),
                contractors: lead.contractors,
                complaints: lead.complaints,
                answered_within_code: proportion_figure(lead.answered_within_code.as_ref()),
                median_working_days_to_acknowledge: lead.median_working_days_to_acknowledge,
                median_working_days_to_respond: lead.median_working_days_to_respond,
                escalated_to_stage_two: proportion_figure(lead.escalated_to_stage_two.as_ref()),
                notifier_escalations_raised: lead.notifier_escalations_raised,
                notifier_escalations_past_deadline: lead.notifier_escalations_past_deadline,
                notifier_escalations_past_deadline_per_100_complaints: rate_figure(
                    lead.notifier_escalations_past_deadline_per_100_complaints
                        .as_ref(),
                ),
            })
            .collect(),
    };
    report.print(&typed, format, out)
}

/// `doorstep report liaison --format json`.
#[derive(Debug, Serialize)]
pub struct LiaisonJson {
    pub from_month: String,
    pub to_month: String,
    pub leads: Vec<LeadHandlingJson>,
}

#[derive(Debug, Serialize)]
pub struct LeadHandlingJson {
    /// `in_house`, `contractor` or `unknown`.
    pub liaison_lead: String,
    pub contractors: u32,
    pub complaints: u64,
    pub answered_within_code: Option<ProportionFigure>,
    pub median_working_days_to_acknowledge: Option<f64>,
    pub median_working_days_to_respond: Option<f64>,
    pub escalated_to_stage_two: Option<ProportionFigure>,
    pub notifier_escalations_raised: u64,
    pub notifier_escalations_past_deadline: u64,
    pub notifier_escalations_past_deadline_per_100_complaints: Option<RateFigure>,
}

/// A liaison lead's name in JSON: snake_case, `unknown` for none.
fn snake_lead(value: i32) -> String {
    match v1::LiaisonLead::try_from(value) {
        Ok(v1::LiaisonLead::Unspecified) => "unknown".to_owned(),
        Ok(lead) => snake(lead.as_str_name(), "LIAISON_LEAD_"),
        Err(_) => value.to_string(),
    }
}
