//! The console's pages, one module each.

pub mod complaints;
pub mod contractor;
pub mod escalations;
pub mod programme;
mod words;

use maud::Markup;

use super::error::ConsoleError;
use super::layout;
use super::session::Session;

/// A signed-in user whose roles open no page of the console (an auditor, say).
pub async fn no_access(session: Session) -> Result<Markup, ConsoleError> {
    Ok(layout::message(
        "Nothing to show",
        Some(&session),
        "Your role has no page in the console. The event log is read through the API.",
    ))
}

/// Today's month in England, for default periods.
pub fn this_month(clock: &dyn crate::clock::Clock) -> doorstep_projections::Month {
    doorstep_projections::Month::of(doorstep_domain::england_date(clock.now()))
}

/// The month `count` months before `month`.
pub fn months_before(
    month: doorstep_projections::Month,
    count: u32,
) -> doorstep_projections::Month {
    let index = month.year() * 12 + month.month() as i32 - 1 - count as i32;
    doorstep_projections::Month::new(index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
        .unwrap_or(month)
}
