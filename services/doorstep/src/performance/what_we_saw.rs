//! "What we saw": a contractor's inspection figures beside its complaint figures, and whether the
//! two sources of evidence disagree (defined in `proto/doorstep/v1/performance.proto`,
//! `EvidenceAgreement`).

use doorstep_api::v1;
use doorstep_domain::statistics::{CONFIDENCE_95, FunnelStatus, wilson_proportion};
use doorstep_projections::InspectionCounts;

use super::{per_hundred_visits, proportion};
use crate::convert;

/// Every contractor's met and observed (met or not met) counts together: the programme share
/// met each contractor is compared with.
pub fn programme_share<'a>(all: impl Iterator<Item = &'a InspectionCounts>) -> (u64, u64) {
    all.fold((0, 0), |(met, observed), counts| {
        (
            met + counts.observations() - counts.not_met(),
            observed + counts.observations(),
        )
    })
}

/// How the two sources compare: `complaints` is the contractor's funnel status on upheld
/// breaches per visit (None without visits), `programme` the programme's (met, observed).
pub fn agreement(
    complaints: Option<FunnelStatus>,
    counts: &InspectionCounts,
    programme: (u64, u64),
) -> v1::EvidenceAgreement {
    let observed = counts.observations();
    let met = observed - counts.not_met();
    let (Some(complaints), Some(share), true) = (
        complaints,
        wilson_proportion(met, observed, CONFIDENCE_95),
        programme.1 > 0,
    ) else {
        return v1::EvidenceAgreement::NotEnoughEvidence;
    };
    let programme_share = programme.0 as f64 / programme.1 as f64;
    let complaints_high = matches!(
        complaints,
        FunnelStatus::AlertHigh | FunnelStatus::AlarmHigh
    );
    if !complaints_high && share.upper < programme_share {
        v1::EvidenceAgreement::FewComplaintsPoorInspections
    } else if complaints_high && share.lower > programme_share {
        v1::EvidenceAgreement::ManyComplaintsGoodInspections
    } else {
        v1::EvidenceAgreement::Consistent
    }
}

/// The figures of one contractor's inspections against its `visits`.
pub fn figures(
    counts: &InspectionCounts,
    visits: u64,
    complaints: Option<FunnelStatus>,
    programme: (u64, u64),
    coverage_target: f64,
) -> v1::InspectionFigures {
    let observed = counts.observations();
    let not_met = counts.not_met();
    let coverage = per_hundred_visits(counts.inspections, visits);
    let agreement = agreement(complaints, counts, programme);
    v1::InspectionFigures {
        inspections: counts.inspections,
        observations: observed,
        not_met,
        share_met: Some(proportion(observed - not_met, observed)),
        coverage_below_target: coverage.defined && coverage.value < coverage_target,
        coverage_per_100_visits: Some(coverage),
        coverage_target_per_100_visits: coverage_target,
        standards: counts
            .standards
            .iter()
            .map(
                |(standard, (observations, not_met))| v1::StandardInspectionFigures {
                    standard: convert::standard(*standard) as i32,
                    observations: *observations,
                    not_met: *not_met,
                    share_met: Some(proportion(observations - not_met, *observations)),
                },
            )
            .collect(),
        programme_share_met: Some(proportion(programme.0, programme.1)),
        sources_disagree: matches!(
            agreement,
            v1::EvidenceAgreement::FewComplaintsPoorInspections
                | v1::EvidenceAgreement::ManyComplaintsGoodInspections
        ),
        agreement: agreement as i32,
    }
}
