//! `doorstep.v1.PerformanceService`: contractor performance and the regulator's complaint
//! measures, from the read models, with honest uncertainty.

use chrono::NaiveDate;
use doorstep_api::v1;
use doorstep_api::v1::performance_service_server::PerformanceService;
use doorstep_domain::InvalidInput;
use doorstep_domain::contractor::LiaisonLead;
use doorstep_domain::statistics::{
    self, CONFIDENCE_95, Estimate, FunnelStatus, funnel_limits, funnel_status, poisson_rate,
    wilson_proportion,
};
use doorstep_projections::{
    ContractorFigures, ContractorTotals, HandlingSummary, LeadHandling, Month, ReadModel,
};
use tonic::Request;

use crate::convert;
use crate::error::ApiError;
use crate::error::answered_by;
use crate::parse;
use crate::request::wait_for_read_model;

mod what_we_saw;

/// Rates are per 100 visits.
const PER_VISITS: f64 = 100.0;
/// Liaison leads' escalation rates are per 100 complaints.
const PER_COMPLAINTS: f64 = 100.0;

pub struct PerformanceApi {
    read_model: ReadModel,
    /// Whether a response inside an agreed extension counts as within the Code's timescales.
    extensions_count_as_within_code: bool,
    /// Inspections per 100 visits the landlord aims for (`[inspections]`).
    coverage_target: f64,
}

impl PerformanceApi {
    pub fn new(read_model: ReadModel, extensions_count_as_within_code: bool) -> Self {
        Self {
            read_model,
            extensions_count_as_within_code,
            coverage_target: 0.0,
        }
    }

    /// Flags inspection coverage below `target` inspections per 100 visits.
    pub fn with_coverage_target(mut self, target: f64) -> Self {
        self.coverage_target = target;
        self
    }
}

fn rate(estimate: Option<Estimate>) -> v1::Rate {
    estimate.map_or_else(v1::Rate::default, |estimate| v1::Rate {
        value: estimate.value,
        lower: estimate.lower,
        upper: estimate.upper,
        defined: true,
    })
}

fn proportion(count: u64, total: u64) -> v1::Proportion {
    match wilson_proportion(count, total, CONFIDENCE_95) {
        Some(estimate) => v1::Proportion {
            count,
            total,
            value: estimate.value,
            lower: estimate.lower,
            upper: estimate.upper,
            defined: true,
        },
        None => v1::Proportion {
            count,
            total,
            ..Default::default()
        },
    }
}

fn per_hundred_visits(count: u64, visits: u64) -> v1::Rate {
    rate(poisson_rate(
        count,
        visits as f64,
        PER_VISITS,
        CONFIDENCE_95,
    ))
}

fn funnel(status: FunnelStatus) -> v1::FunnelStatus {
    match status {
        FunnelStatus::Within => v1::FunnelStatus::Within,
        FunnelStatus::AlertHigh => v1::FunnelStatus::AlertHigh,
        FunnelStatus::AlertLow => v1::FunnelStatus::AlertLow,
        FunnelStatus::AlarmHigh => v1::FunnelStatus::AlarmHigh,
        FunnelStatus::AlarmLow => v1::FunnelStatus::AlarmLow,
    }
}

impl PerformanceApi {
    /// Answered stages of the complaints: (answered, answered within the Code).
    fn answered(&self, handling: &HandlingSummary) -> (u64, u64) {
        let within = if self.extensions_count_as_within_code {
            handling.answered_within_extended_due
        } else {
            handling.answered_within_original_due
        };
        (handling.answered, within)
    }

    fn contractor_response(
        &self,
        figures: &ContractorFigures,
        legal_name: String,
        audit: v1::EqualityAuditStatus,
        inspections: v1::InspectionFigures,
    ) -> v1::GetContractorPerformanceResponse {
        let (answered, within) = self.answered(&figures.handling);
        let to_acknowledge = statistics::median_of_counts(&figures.handling.days_to_acknowledge);
        let to_respond = statistics::median_of_counts(&figures.handling.days_to_respond);
        v1::GetContractorPerformanceResponse {
            contractor_id: figures.contractor_id.clone(),
            legal_name,
            from_month: figures.from_month.to_string(),
            to_month: figures.to_month.to_string(),
            visits: figures.visits,
            complaints: figures.complaints,
            reported_breaches: figures.reported_breaches(),
            upheld_breaches: figures.upheld_breaches(),
            reported_per_100_visits: Some(per_hundred_visits(
                figures.reported_breaches(),
                figures.visits,
            )),
            upheld_per_100_visits: Some(per_hundred_visits(
                figures.upheld_breaches(),
                figures.visits,
            )),
            standards: figures
                .standards
                .iter()
                .map(|standard| v1::StandardPerformance {
                    standard: convert::standard(standard.standard) as i32,
                    reported: standard.reported,
                    upheld: standard.upheld,
                    partly_upheld: standard.partly_upheld,
                    not_upheld: standard.not_upheld,
                    pending: standard.pending(),
                    upheld_per_100_visits: Some(per_hundred_visits(
                        standard.upheld_breaches(),
                        figures.visits,
                    )),
                })
                .collect(),
            visits_with_upheld_breach: Some(proportion(
                figures.visits_with_upheld_breach,
                figures.visits,
            )),
            answered_within_code: Some(proportion(within, answered)),
            median_working_days_to_acknowledge: to_acknowledge,
            median_working_days_to_respond: to_respond,
            escalations_to_stage_two: figures.escalations,
            notifier_escalations_raised: figures.escalations_raised,
            notifier_escalations_past_deadline: figures.escalations_past_deadline,
            reopened: figures.reopened,
            equality_audit: Some(audit),
            inspections: Some(inspections),
        }
    }
}

impl PerformanceApi {
    /// "What we saw" of one contractor in `from..=to`: its inspections against its `visits`,
    /// compared with the programme (every contractor's inspections and complaint rates).
    async fn what_we_saw(
        &self,
        contractor_id: &str,
        visits: u64,
        from: Month,
        to: Month,
    ) -> Result<v1::InspectionFigures, ApiError> {
        let inspections = self.read_model.inspection_counts(from, to, None).await?;
        let programme_share = what_we_saw::programme_share(inspections.values());
        let totals = self.read_model.programme_performance(from, to).await?;
        let (programme_visits, programme_upheld) = totals
            .iter()
            .filter(|totals| totals.visits > 0)
            .fold((0, 0), |(visits, upheld), totals| {
                (visits + totals.visits, upheld + totals.upheld_breaches)
            });
        let upheld = totals
            .iter()
            .find(|totals| totals.contractor_id == contractor_id)
            .map_or(0, |totals| totals.upheld_breaches);
        let complaints = (visits > 0 && programme_visits > 0).then(|| {
            funnel_status(
                upheld,
                visits as f64,
                programme_upheld as f64 / programme_visits as f64,
            )
        });
        let none = doorstep_projections::InspectionCounts::default();
        Ok(what_we_saw::figures(
            inspections.get(contractor_id).unwrap_or(&none),
            visits,
            complaints,
            programme_share,
            self.coverage_target,
        ))
    }

    async fn get_contractor_performance(
        &self,
        request: Request<v1::GetContractorPerformanceRequest>,
    ) -> Result<v1::GetContractorPerformanceResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let principal = crate::auth::principal(&request)?.clone();
        let body = request.into_inner();
        let contractor_id = crate::parse::contractor_id("contractor_id", &body.contractor_id)?;
        if !principal.may_see_contractor(&contractor_id) {
            return Err(ApiError::PermissionDenied(
                "a contractor may see only its own figures".to_owned(),
            ));
        }
        let (from, to) = parse::month_range(&body.from_month, &body.to_month)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let registered = self
            .read_model
            .contractor(contractor_id.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("no contractor has this id".to_owned()))?;
        let figures = self
            .read_model
            .contractor_performance(contractor_id.as_str(), from, to)
            .await?;
        let audit = match &registered.latest_audit {
            Some(audit) => v1::EqualityAuditStatus {
                audited: true,
                latest_audit_date: audit.audit_date.to_string(),
                latest_outcome: convert::audit_outcome(audit.outcome) as i32,
                requirements_not_met: audit.requirements_not_met.clone(),
            },
            None => v1::EqualityAuditStatus::default(),
        };
        let inspections = self
            .what_we_saw(contractor_id.as_str(), figures.visits, from, to)
            .await?;
        Ok(self.contractor_response(&figures, registered.legal_name.clone(), audit, inspections))
    }

    async fn list_contractor_performance(
        &self,
        request: Request<v1::ListContractorPerformanceRequest>,
    ) -> Result<v1::ListContractorPerformanceResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let (from, to) = parse::month_range(&body.from_month, &body.to_month)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let totals = self.read_model.programme_performance(from, to).await?;
        let programme_visits: u64 = totals.iter().map(|t| t.visits).sum();
        // Only breaches with exposure behind them make up the average every rate is held to.
        let programme_upheld: u64 = totals
            .iter()
            .filter(|t| t.visits > 0)
            .map(|t| t.upheld_breaches)
            .sum();
        let target = if programme_visits > 0 {
            programme_upheld as f64 / programme_visits as f64
        } else {
            0.0
        };
        let inspections = self.read_model.inspection_counts(from, to, None).await?;
        let programme_share = what_we_saw::programme_share(inspections.values());
        let none = doorstep_projections::InspectionCounts::default();
        let mut standings: Vec<v1::ContractorStanding> = totals
            .iter()
            .map(|totals| {
                let counts = inspections.get(&totals.contractor_id).unwrap_or(&none);
                standing(
                    totals,
                    target,
                    counts,
                    programme_share,
                    self.coverage_target,
                )
            })
            .collect();
        rank(&mut standings, body.min_visits.max(1));
        Ok(v1::ListContractorPerformanceResponse {
            programme_visits,
            programme_upheld_breaches: programme_upheld,
            programme_upheld_per_100_visits: Some(per_hundred_visits(
                programme_upheld,
                programme_visits,
            )),
            contractors: standings,
        })
    }

    async fn get_complaint_handling_report(
        &self,
        request: Request<v1::GetComplaintHandlingReportRequest>,
    ) -> Result<v1::GetComplaintHandlingReportResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        if body.homes == 0 {
            return Err(ApiError::from(InvalidInput::new(
                "homes",
                "must be the number of homes owned, at least 1",
            )));
        }
        let year = i32::try_from(body.reporting_year)
            .ok()
            .filter(|year| (2000..=2100).contains(year));
        let (Some(from), Some(to)) = (
            year.and_then(|year| NaiveDate::from_ymd_opt(year, 4, 1)),
            year.and_then(|year| NaiveDate::from_ymd_opt(year + 1, 3, 31)),
        ) else {
            return Err(ApiError::from(InvalidInput::new(
                "reporting_year",
                "must be a year from 2000 to 2100",
            )));
        };
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let counts = self
            .read_model
            .handling_report(Month::of(from), Month::of(to))
            .await?;
        let stage = |stage: v1::Stage, counts: doorstep_projections::StageCounts| {
            let within = if self.extensions_count_as_within_code {
                counts.responded_within_extended_due
            } else {
                counts.responded_within_original_due
            };
            v1::StageHandling {
                stage: stage as i32,
                received: counts.received,
                per_1000_homes: counts.received as f64 / body.homes as f64 * 1_000.0,
                responded: counts.responded,
                responded_within_code: within,
                percent_within_code: (counts.responded > 0)
                    .then(|| within as f64 / counts.responded as f64 * 100.0),
            }
        };
        Ok(v1::GetComplaintHandlingReportResponse {
            reporting_year: body.reporting_year,
            from_date: from.to_string(),
            to_date: to.to_string(),
            homes: body.homes,
            stage_one: Some(stage(v1::Stage::One, counts.stage_one)),
            stage_two: Some(stage(v1::Stage::Two, counts.stage_two)),
            extensions_count_as_within_code: self.extensions_count_as_within_code,
        })
    }
}

impl PerformanceApi {
    async fn compare_liaison_leads(
        &self,
        request: Request<v1::CompareLiaisonLeadsRequest>,
    ) -> Result<v1::CompareLiaisonLeadsResponse, ApiError> {
        parse::within_limits(request.get_ref())?;
        let body = request.into_inner();
        let (from, to) = parse::month_range(&body.from_month, &body.to_month)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let mut figures = self.read_model.liaison_lead_handling(from, to).await?;
        let leads = [
            Some(LiaisonLead::InHouse),
            Some(LiaisonLead::Contractor),
            None,
        ]
        .into_iter()
        .map(|lead| {
            let code = lead.map_or("", LiaisonLead::code);
            let figures = figures.remove(code).unwrap_or_default();
            self.lead_handling(lead, &figures)
        })
        .collect();
        Ok(v1::CompareLiaisonLeadsResponse {
            from_month: from.to_string(),
            to_month: to.to_string(),
            leads,
        })
    }

    fn lead_handling(
        &self,
        lead: Option<LiaisonLead>,
        figures: &LeadHandling,
    ) -> v1::LiaisonLeadHandling {
        let handling = &figures.handling;
        let (answered, within) = self.answered(handling);
        v1::LiaisonLeadHandling {
            liaison_lead: convert::liaison_lead(lead) as i32,
            contractors: u32::try_from(figures.contractors).unwrap_or(u32::MAX),
            complaints: handling.complaints,
            answered_within_code: Some(proportion(within, answered)),
            median_working_days_to_acknowledge: statistics::median_of_counts(
                &handling.days_to_acknowledge,
            ),
            median_working_days_to_respond: statistics::median_of_counts(&handling.days_to_respond),
            escalated_to_stage_two: Some(proportion(handling.escalations, handling.complaints)),
            notifier_escalations_raised: figures.escalations_raised,
            notifier_escalations_past_deadline: figures.escalations_past_deadline,
            notifier_escalations_past_deadline_per_100_complaints: Some(rate(poisson_rate(
                figures.escalations_past_deadline,
                handling.complaints as f64,
                PER_COMPLAINTS,
                CONFIDENCE_95,
            ))),
        }
    }
}

/// One month of the run chart: a contractor's, or the programme's, upheld breaches per 100
/// visits (with its interval), from the monthly counters the reports sum.
pub struct MonthlyRate {
    pub month: String,
    pub visits: u64,
    pub upheld_breaches: u64,
    pub rate: v1::Rate,
}

impl PerformanceApi {
    /// The monthly series of a contractor and of the programme over a period, for the console's
    /// run chart: the same policy line (`GetContractorPerformance`) and the same confinement (a
    /// contractor sees its own series and the programme's average only).
    pub(crate) async fn monthly_rates(
        &self,
        request: Request<v1::GetContractorPerformanceRequest>,
    ) -> Result<tonic::Response<(Vec<MonthlyRate>, Vec<MonthlyRate>)>, tonic::Status> {
        crate::error::answer(self.monthly_series(request).await)
    }

    async fn monthly_series(
        &self,
        request: Request<v1::GetContractorPerformanceRequest>,
    ) -> Result<(Vec<MonthlyRate>, Vec<MonthlyRate>), ApiError> {
        parse::within_limits(request.get_ref())?;
        let principal = crate::auth::principal(&request)?.clone();
        let body = request.into_inner();
        let contractor_id = crate::parse::contractor_id("contractor_id", &body.contractor_id)?;
        if !principal.may_see_contractor(&contractor_id) {
            return Err(ApiError::PermissionDenied(
                "a contractor may see only its own figures".to_owned(),
            ));
        }
        let (from, to) = parse::month_range(&body.from_month, &body.to_month)?;
        wait_for_read_model(&self.read_model, body.min_position).await?;
        let series = |months: Vec<doorstep_projections::MonthlyBreaches>| -> Vec<MonthlyRate> {
            months
                .into_iter()
                .map(|month| MonthlyRate {
                    month: month.month.to_string(),
                    visits: month.visits,
                    upheld_breaches: month.upheld_breaches,
                    rate: per_hundred_visits(month.upheld_breaches, month.visits),
                })
                .collect()
        };
        let own = self
            .read_model
            .monthly_breaches(Some(contractor_id.as_str()), from, to)
            .await?;
        let programme = self.read_model.monthly_breaches(None, from, to).await?;
        Ok((series(own), series(programme)))
    }
}

answered_by! {
    /// Delegates every call to [`PerformanceApi`]'s own methods and answers in one step.
    PerformanceService, PerformanceApi {
        fn get_contractor_performance(v1::GetContractorPerformanceRequest) -> v1::GetContractorPerformanceResponse;
        fn list_contractor_performance(v1::ListContractorPerformanceRequest) -> v1::ListContractorPerformanceResponse;
        fn get_complaint_handling_report(v1::GetComplaintHandlingReportRequest) -> v1::GetComplaintHandlingReportResponse;
        fn compare_liaison_leads(v1::CompareLiaisonLeadsRequest) -> v1::CompareLiaisonLeadsResponse;
    }
}

/// One contractor's standing against the programme's average rate `target`, not ranked yet,
/// with what its inspections saw beside it.
fn standing(
    totals: &ContractorTotals,
    target: f64,
    inspections: &doorstep_projections::InspectionCounts,
    programme_share: (u64, u64),
    coverage_target: f64,
) -> v1::ContractorStanding {
    let visits = totals.visits as f64;
    let limits = funnel_limits(target, visits, PER_VISITS);
    let complaints =
        (totals.visits > 0).then(|| funnel_status(totals.upheld_breaches, visits, target));
    let status = complaints.map_or(v1::FunnelStatus::NoExposure, funnel);
    v1::ContractorStanding {
        contractor_id: totals.contractor_id.clone(),
        legal_name: totals.legal_name.clone(),
        visits: totals.visits,
        upheld_breaches: totals.upheld_breaches,
        upheld_per_100_visits: Some(per_hundred_visits(totals.upheld_breaches, totals.visits)),
        funnel_status: status as i32,
        alert_lower: limits.map_or(0.0, |l| l.alert_lower),
        alert_upper: limits.map_or(0.0, |l| l.alert_upper),
        alarm_lower: limits.map_or(0.0, |l| l.alarm_lower),
        alarm_upper: limits.map_or(0.0, |l| l.alarm_upper),
        rank: 0,
        inspections: Some(what_we_saw::figures(
            inspections,
            totals.visits,
            complaints,
            programme_share,
            coverage_target,
        )),
    }
}

/// Ranks the contractors with at least `min_visits` by rate (best first, ties by id) and sorts
/// the list: ranked ones in rank order, then the others by visits.
fn rank(standings: &mut [v1::ContractorStanding], min_visits: u64) {
    let rate_of = |standing: &v1::ContractorStanding| {
        standing.upheld_breaches as f64 / standing.visits.max(1) as f64
    };
    let mut ranked: Vec<&mut v1::ContractorStanding> = standings
        .iter_mut()
        .filter(|standing| standing.visits >= min_visits)
        .collect();
    ranked.sort_by(|a, b| {
        rate_of(a)
            .total_cmp(&rate_of(b))
            .then_with(|| a.contractor_id.cmp(&b.contractor_id))
    });
    for (index, standing) in ranked.into_iter().enumerate() {
        // Ranks count contractors, which never reach u32::MAX.
        standing.rank = u32::try_from(index + 1).unwrap_or(u32::MAX);
    }
    standings.sort_by(|a, b| match (a.rank, b.rank) {
        (0, 0) => b
            .visits
            .cmp(&a.visits)
            .then_with(|| a.contractor_id.cmp(&b.contractor_id)),
        (0, _) => std::cmp::Ordering::Greater,
        (_, 0) => std::cmp::Ordering::Less,
        (a_rank, b_rank) => a_rank.cmp(&b_rank),
    });
}
