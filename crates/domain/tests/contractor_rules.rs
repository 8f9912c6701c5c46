//! The contractor registry's rules and stored form.

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::DomainError;
use doorstep_domain::ServiceStandard;
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, Contractor, ContractorCommand, ContractorEvent, ContractorProfile,
    ContractorStatus, EqualityAudit, LiaisonLead, ResidentChampion, ResidentLiaison,
    StandardsSignOff, apply_contractor, handle_contractor,
};
use doorstep_domain::input::{
    ContractorId, LongText, OptionalText, PersonName, PhoneNumber, ResidentReference, ShortText,
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
            liaison: None,
            equality_conditions: None,
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

fn sign_off(standards: &[ServiceStandard]) -> StandardsSignOff {
    StandardsSignOff {
        contract_reference: valid(ShortText::parse("contract_reference", "RETRO-2026-01")),
        champions: vec![ResidentChampion {
            reference: valid(ResidentReference::parse("reference", "RC-7")),
            published_name: None,
        }],
        signed_off_on: valid(NaiveDate::parse_from_str("2026-03-20", "%Y-%m-%d")),
        standards: standards.to_vec(),
        comments: OptionalText::default(),
    }
}

fn signed_off(state: &Option<Contractor>) -> Vec<bool> {
    state
        .iter()
        .flat_map(|contractor| contractor.sign_offs.iter().map(|s| s.signed_off))
        .collect()
}

#[test]
fn a_sign_off_goes_stale_when_the_contract_standards_change() {
    let at: DateTime<Utc> = valid("2026-04-01T09:00:00Z".parse());
    let mut state = None;
    valid(run(
        &mut state,
        ContractorCommand::Register {
            contractor_id: valid(ContractorId::parse("contractor_id", "acme-retrofit")),
            profile: profile("Acme Retrofit Ltd"),
            at,
        },
    ));
    assert_eq!(
        signed_off(&state),
        [false],
        "a new contract is not signed off"
    );

    // Champions sign off exactly the contract's standards, in any order.
    let fewer = &ServiceStandard::ALL[..3];
    let refused = run(
        &mut state,
        ContractorCommand::RecordStandardsSignOff {
            sign_off: sign_off(fewer),
            at,
        },
    );
    assert!(
        matches!(&refused, Err(DomainError::InvalidInput(e)) if e.field == "sign_off.standards"),
        "{refused:?}"
    );
    let mut all_reversed = ServiceStandard::ALL.to_vec();
    all_reversed.reverse();
    valid(run(
        &mut state,
        ContractorCommand::RecordStandardsSignOff {
            sign_off: sign_off(&all_reversed),
            at,
        },
    ));
    assert_eq!(signed_off(&state), [true]);

    // The same standards in another profile keep the sign-off; changed standards do not.
    valid(run(
        &mut state,
        ContractorCommand::Update {
            profile: profile("Acme Retrofit Group Ltd"),
            at,
        },
    ));
    assert_eq!(signed_off(&state), [true]);
    let mut changed = profile("Acme Retrofit Group Ltd");
    changed.contracts[0].standards = fewer.to_vec();
    valid(run(
        &mut state,
        ContractorCommand::Update {
            profile: changed,
            at,
        },
    ));
    assert_eq!(signed_off(&state), [false]);
    // Changing them back is still a change the champions have not seen.
    valid(run(
        &mut state,
        ContractorCommand::Update {
            profile: profile("Acme Retrofit Group Ltd"),
            at,
        },
    ));
    assert_eq!(signed_off(&state), [false]);
    let latest = state
        .as_ref()
        .and_then(|contractor| contractor.sign_offs[0].latest.clone());
    assert_eq!(latest.map(|s| s.standards), Some(all_reversed.clone()));

    valid(run(
        &mut state,
        ContractorCommand::RecordStandardsSignOff {
            sign_off: sign_off(&all_reversed),
            at,
        },
    ));
    assert_eq!(signed_off(&state), [true], "signed off again");

    let mut unknown = sign_off(&all_reversed);
    unknown.contract_reference = valid(ShortText::parse("contract_reference", "OTHER-1"));
    let refused = run(
        &mut state,
        ContractorCommand::RecordStandardsSignOff {
            sign_off: unknown,
            at,
        },
    );
    assert!(
        matches!(&refused, Err(DomainError::InvalidInput(e)) if e.field == "sign_off.contract_reference"),
        "{refused:?}"
    );
}

#[test]
fn a_complaint_is_attributed_to_the_lead_all_contracts_name() {
    let at: DateTime<Utc> = valid("2026-04-01T09:00:00Z".parse());
    let mut with_lead = profile("Acme Retrofit Ltd");
    with_lead.contracts[0].liaison = Some(ResidentLiaison {
        lead: LiaisonLead::InHouse,
        contact_name: valid(PersonName::parse("liaison_contact_name", "Robin Liaison")),
    });
    let mut state = None;
    valid(run(
        &mut state,
        ContractorCommand::Register {
            contractor_id: valid(ContractorId::parse("contractor_id", "acme-retrofit")),
            profile: with_lead.clone(),
            at,
        },
    ));
    let lead = |state: &Option<Contractor>| state.as_ref().and_then(Contractor::liaison_lead);
    assert_eq!(lead(&state), Some(LiaisonLead::InHouse));
    let mut second = with_lead.contracts[0].clone();
    second.reference = valid(ShortText::parse("reference", "RETRO-2027-01"));
    second.liaison = None;
    with_lead.contracts.push(second);
    valid(run(
        &mut state,
        ContractorCommand::Update {
            profile: with_lead,
            at,
        },
    ));
    assert_eq!(
        lead(&state),
        None,
        "a contract without a lead makes it unknown"
    );
}
