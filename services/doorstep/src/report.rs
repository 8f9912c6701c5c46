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
    #[error("the server refused the report: {0}")]
    Refused(#[from] tonic::Status),
    #[error("cannot write the report")]
    Csv(#[from] csv::Error),
    #[error("cannot write the report")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the report")]
    Io(#[from] std::io::Error),
}

/// A table of strings: what every report becomes before it is printed.
#[derive(Debug, Serialize)]
struct Report {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Lines shown under a table (notes on the figures).
    notes: Vec<String>,
}

impl Report {
    fn print(
        &self,
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
                let records: Vec<serde_json::Map<String, serde_json::Value>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        self.columns
                            .iter()
                            .zip(row)
                            .map(|(column, value)| ((*column).to_owned(), value.clone().into()))
                            .collect()
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &records)?;
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
            "Contractor performance {from_month} to {to_month}: programme average {average} upheld breaches per 100 visits ({average_interval}), {} visits",
            answer.programme_visits
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
            "Only contractors with at least {min_visits} visits are ranked; 1 is the lowest rate."
        )],
    };
    report.print(format, out)
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
            "{} ({}) {from_month} to {to_month}: {} visits, {} complaints; reported {reported} per 100 visits ({reported_interval})",
            answer.legal_name, answer.contractor_id, answer.visits, answer.complaints
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
    report.print(format, out)
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
            "Complaint handling {} to {} ({} homes)",
            answer.from_date, answer.to_date, answer.homes
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
    report.print(format, out)
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
    report.print(format, out)
}
