//! The contractor registry's rules and stored form.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::DomainError;
use doorstep_domain::ServiceStandard;
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, Contractor, ContractorCommand, ContractorEvent, ContractorProfile,
    ContractorStatus, EqualityAudit, apply_contractor, handle_contractor,
};
use doorstep_domain::input::{
    ContractorId, LongText, OptionalText, PersonName, PhoneNumber, ShortText,
};

fn valid<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("test input is valid: {error:?}"))
}

fn profile(name: &str) -> ContractorProfile {
    ContractorProfile {
        legal_name: valid(ShortText::parse("legal_name", name)),
        trading_names: vec![valid(ShortText::parse(
            "trading_names[0]",
            "Acme Warm Homes",
        ))],
        logo_url: OptionalText::default(),
        public_contact_name: valid(PersonName::parse("public_contact_name", "Sam Site")),
        public_phone: valid(PhoneNumber::parse("public_phone", "0113 496 0000")),
        contracts: vec![ContractTerms {
            reference: valid(ShortText::parse("contracts[0].reference", "RETRO-2026-01")),
            standards: ServiceStandard::ALL.to_vec(),
        }],
    }
}

fn run(state: &mut Option<Contractor>, command: ContractorCommand) -> Result<(), DomainError> {
    let events = handle_contractor(state.as_ref(), command)?;
    for event in &events {
        let stored = ContractorEvent::from_payload(event.event_type(), 1, &event.to_payload());
        assert_eq!(stored.ok().as_ref(), Some(event), "events round-trip");
        *state = apply_contractor(state.take(), event);
    }
    Ok(())
}

#[test]
fn registry_lifecycle() {
    let at: DateTime<Utc> = valid("2026-04-01T09:00:00Z".parse());
    let mut state = None;
    let suspend = ContractorCommand::Suspend {
        reason: valid(ShortText::parse("reason", "Smoking complaints")),
        at,
    };
    assert_eq!(run(&mut state, suspend.clone()), Err(DomainError::NotFound));
    let register = ContractorCommand::Register {
        contractor_id: valid(ContractorId::parse("contractor_id", "acme-retrofit")),
        profile: profile("Acme Retrofit Ltd"),
        at,
    };
    valid(run(&mut state, register.clone()));
    assert!(matches!(
        run(&mut state, register),
        Err(DomainError::NotAllowed(_))
    ));
    valid(run(&mut state, suspend.clone()));
    assert!(matches!(
        run(&mut state, suspend),
        Err(DomainError::NotAllowed(_))
    ));
    valid(run(
        &mut state,
        ContractorCommand::Reinstate {
            reason: OptionalText::default(),
            at,
        },
    ));
    for (date, outcome) in [
        ("2026-05-01", AuditOutcome::Unsatisfactory),
        ("2026-03-01", AuditOutcome::Satisfactory),
    ] {
        valid(run(
            &mut state,
            ContractorCommand::RecordEqualityAudit {
                audit: EqualityAudit {
                    audit_date: valid(NaiveDate::parse_from_str(date, "%Y-%m-%d")),
                    auditor: valid(ShortText::parse("auditor", "Equality Team")),
                    workforce_diversity: LongText::default(),
                    equality_policy_and_procedures: LongText::default(),
                    requirements_not_met: LongText::default(),
                    staff_experience_and_training: LongText::default(),
                    outcome,
                },
                at,
            },
        ));
    }
    valid(run(
        &mut state,
        ContractorCommand::Update {
            profile: profile("Acme Retrofit Group Ltd"),
            at,
        },
    ));
    let contractor = state.unwrap_or_else(|| panic!("registered"));
    assert_eq!(contractor.status, ContractorStatus::Active);
    assert_eq!(contractor.version, 6);
    assert_eq!(
        contractor.profile.legal_name.as_str(),
        "Acme Retrofit Group Ltd"
    );
    assert_eq!(
        contractor
            .latest_equality_audit()
            .map(|audit| audit.outcome),
        Some(AuditOutcome::Unsatisfactory),
        "the latest audit is the latest by date, not by entry"
    );
}
