//! Working days as the Complaint Handling Code counts them.
//!
//! A working day is Monday to Friday, except England and Wales bank holidays and the landlord's own
//! closure days. No official counting rule exists, so Doorstep counts the day of receipt as day 0
//! and the next working day as day 1, and records which calendar version computed each deadline.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::Deserialize;

/// The bank holidays that ship with Doorstep, in GOV.UK's `bank-holidays.json` format: GOV.UK's
/// published history from 2012, with the one-off holidays (jubilees, a state funeral, a
/// coronation). Years after GOV.UK's published range are projected from the usual rules.
const SHIPPED_BANK_HOLIDAYS: &str = include_str!("../data/bank-holidays.json");

/// The GOV.UK division whose holidays apply to English landlords.
const DIVISION: &str = "england-and-wales";

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("bank holiday data is not GOV.UK bank-holidays JSON: {0}")]
    Format(#[from] serde_json::Error),
    #[error("bank holiday data has no `{DIVISION}` division")]
    MissingDivision,
    #[error("bank holiday data has an invalid date `{0}` (expected YYYY-MM-DD)")]
    InvalidDate(String),
    #[error("bank holiday data has no `{DIVISION}` holidays, so it covers no year")]
    NoHolidays,
}

#[derive(Deserialize)]
struct GovUkDivision {
    events: Vec<GovUkEvent>,
}

#[derive(Deserialize)]
struct GovUkEvent {
    date: String,
}

/// A count of working days the calendar cannot make: it starts or ends outside the years whose
/// bank holidays it knows, so any answer could be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "working days from {start} cannot be counted: the working-day calendar covers {} to {}",
    covered.start(),
    covered.end()
)]
pub struct OutsideCalendar {
    /// The day the count starts from.
    pub start: NaiveDate,
    /// The days the calendar can count within.
    pub covered: RangeInclusive<NaiveDate>,
}

/// Which days count as working days, and a name for the data that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingDayCalendar {
    bank_holidays: BTreeSet<NaiveDate>,
    closure_days: BTreeSet<NaiveDate>,
    /// From 1 January of the first year with a bank holiday to 31 December of the last: a year
    /// the data mentions is taken to be complete, and no other year is known.
    covered: RangeInclusive<NaiveDate>,
    version: String,
}

impl WorkingDayCalendar {
    /// The England and Wales bank holidays shipped with this build (2012 to 2030).
    pub fn england_and_wales() -> Self {
        // The shipped file is checked by a unit test, so failing here is a build defect, not input.
        #[allow(clippy::expect_used)]
        Self::from_gov_uk_json(SHIPPED_BANK_HOLIDAYS).expect("shipped bank holidays are valid")
    }

    /// Parses GOV.UK's `bank-holidays.json` (or a file of the same shape) and takes the
    /// `england-and-wales` division.
    pub fn from_gov_uk_json(json: &str) -> Result<Self, CalendarError> {
        let mut divisions: std::collections::HashMap<String, GovUkDivision> =
            serde_json::from_str(json)?;
        let division = divisions
            .remove(DIVISION)
            .ok_or(CalendarError::MissingDivision)?;
        let bank_holidays = division
            .events
            .iter()
            .map(|event| {
                NaiveDate::parse_from_str(&event.date, "%Y-%m-%d")
                    .map_err(|_| CalendarError::InvalidDate(event.date.clone()))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let version = Self::describe(&bank_holidays, &BTreeSet::new());
        let covered = Self::covered_years(&bank_holidays)?;
        Ok(Self {
            bank_holidays,
            closure_days: BTreeSet::new(),
            covered,
            version,
        })
    }

    /// Adds the landlord's own closure days (for example the days between Christmas and New Year).
    pub fn with_closure_days(mut self, days: impl IntoIterator<Item = NaiveDate>) -> Self {
        self.closure_days.extend(days);
        self.version = Self::describe(&self.bank_holidays, &self.closure_days);
        self
    }

    /// Names the data behind this calendar, so a recorded deadline says how it was computed.
    /// The name changes whenever a holiday or closure day is added or removed.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The days this calendar can count working days within.
    pub fn covered(&self) -> RangeInclusive<NaiveDate> {
        self.covered.clone()
    }

    /// The date `working_days` working days after `start`, refused when `start` or the answer
    /// lies outside the years whose bank holidays the calendar knows: a deadline counted over
    /// unknown holidays would be silently wrong.
    pub fn try_add_working_days(
        &self,
        start: NaiveDate,
        working_days: u32,
    ) -> Result<NaiveDate, OutsideCalendar> {
        let outside = || OutsideCalendar {
            start,
            covered: self.covered(),
        };
        if !self.covered.contains(&start) {
            return Err(outside());
        }
        let due = self.add_working_days(start, working_days);
        if !self.covered.contains(&due) {
            return Err(outside());
        }
        Ok(due)
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
            && !self.bank_holidays.contains(&date)
            && !self.closure_days.contains(&date)
    }

    /// The date `working_days` working days after `start`, where `start` is day 0 whatever it is.
    /// Zero working days gives `start` itself.
    pub fn add_working_days(&self, start: NaiveDate, working_days: u32) -> NaiveDate {
        let mut date = start;
        let mut remaining = working_days;
        while remaining > 0 {
            date = date.succ_opt().unwrap_or(date);
            if self.is_working_day(date) {
                remaining -= 1;
            }
        }
        date
    }

    /// How many working days fall after `start` up to and including `end`; negative when `end`
    /// is before `start`. `working_days_between(d, add_working_days(d, n)) == n`.
    pub fn working_days_between(&self, start: NaiveDate, end: NaiveDate) -> i64 {
        let (from, to, sign) = if end >= start {
            (start, end, 1)
        } else {
            (end, start, -1)
        };
        let count = from
            .iter_days()
            .skip(1)
            .take_while(|date| *date <= to)
            .filter(|date| self.is_working_day(*date))
            .count();
        sign * i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn covered_years(
        bank_holidays: &BTreeSet<NaiveDate>,
    ) -> Result<RangeInclusive<NaiveDate>, CalendarError> {
        let (Some(first), Some(last)) = (bank_holidays.first(), bank_holidays.last()) else {
            return Err(CalendarError::NoHolidays);
        };
        let start = NaiveDate::from_ymd_opt(first.year(), 1, 1);
        let end = NaiveDate::from_ymd_opt(last.year(), 12, 31);
        match (start, end) {
            (Some(start), Some(end)) => Ok(start..=end),
            _ => Err(CalendarError::InvalidDate(last.to_string())),
        }
    }

    fn describe(bank_holidays: &BTreeSet<NaiveDate>, closure_days: &BTreeSet<NaiveDate>) -> String {
        let first = bank_holidays.first().map_or(0, |date| date.year());
        let last = bank_holidays.last().map_or(0, |date| date.year());
        // A short stable digest of every date, so two calendars with the same range but different
        // days never share a version.
        let digest = bank_holidays.iter().chain(closure_days.iter()).fold(
            0xcbf2_9ce4_8422_2325_u64,
            |hash, date| {
                // A digest, not data: a date before year 1 (no calendar has one) hashes as day 0.
                let day = u64::try_from(date.num_days_from_ce()).unwrap_or_default();
                (hash ^ day).wrapping_mul(0x0100_0000_01b3)
            },
        );
        format!(
            "{DIVISION}/{first}-{last}/{}+{}/{digest:016x}",
            bank_holidays.len(),
            closure_days.len()
        )
    }
}

/// The calendar date in England at an instant: the Code counts days as residents live them.
pub fn england_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::Europe::London).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn shipped_data_covers_2020_to_2030() {
        let calendar = WorkingDayCalendar::england_and_wales();
        for year in 2020..=2030 {
            let count = calendar
                .bank_holidays
                .iter()
                .filter(|day| day.year() == year)
                .count();
            assert!(count >= 8, "{year} has only {count} bank holidays");
        }
        // One-off holidays are in the data.
        assert!(!calendar.is_working_day(date("2022-06-03")));
        assert!(!calendar.is_working_day(date("2022-09-19")));
        assert!(!calendar.is_working_day(date("2023-05-08")));
    }

    #[test]
    fn shipped_data_covers_2012_with_its_one_off_holidays() {
        let calendar = WorkingDayCalendar::england_and_wales();
        assert_eq!(calendar.covered(), date("2012-01-01")..=date("2030-12-31"));
        for year in 2012..=2019 {
            let count = calendar
                .bank_holidays
                .iter()
                .filter(|day| day.year() == year)
                .count();
            assert!(count >= 8, "{year} has only {count} bank holidays");
        }
        for holiday in [
            "2012-01-02", // New Year's Day fell on a Sunday
            "2012-06-04", // the spring bank holiday, moved for the Diamond Jubilee
            "2012-06-05", // the Diamond Jubilee
            "2015-12-28", // Boxing Day fell on a Saturday
            "2016-12-27", // Christmas Day fell on a Sunday
            "2017-01-02",
            "2019-04-19", // Good Friday
            "2019-04-22", // Easter Monday
            "2020-05-08", // VE day, the early May bank holiday moved
            "2022-06-02",
            "2022-06-03",
            "2022-09-19",
            "2023-05-08",
        ] {
            assert!(!calendar.is_working_day(date(holiday)), "{holiday}");
        }
        // The usual days of the holidays that were moved are working days.
        for moved in ["2012-05-28", "2020-05-04", "2022-05-30"] {
            assert!(calendar.is_working_day(date(moved)), "{moved}");
        }
    }

    #[test]
    fn christmas_2019_counts_its_bank_holidays() {
        // Received Tuesday 24 December 2019: 25 and 26 December and 1 January are holidays.
        let calendar = WorkingDayCalendar::england_and_wales();
        assert_eq!(
            calendar.try_add_working_days(date("2019-12-24"), 5),
            Ok(date("2020-01-03"))
        );
    }

    #[test]
    fn counts_outside_the_covered_years_are_refused() {
        let calendar = WorkingDayCalendar::england_and_wales();
        let before = calendar.try_add_working_days(date("2011-12-30"), 1);
        assert_eq!(
            before.as_ref().map_err(ToString::to_string).err(),
            Some(
                "working days from 2011-12-30 cannot be counted: the working-day calendar \
                 covers 2012-01-01 to 2030-12-31"
                    .to_owned()
            )
        );
        // The start is covered, the deadline is not.
        assert!(
            calendar
                .try_add_working_days(date("2030-12-20"), 10)
                .is_err()
        );
        assert_eq!(
            calendar.try_add_working_days(date("2030-12-20"), 3),
            Ok(date("2030-12-27"))
        );
    }

    #[test]
    fn thursday_before_easter_2026() {
        // Received Thursday 2 April 2026: Good Friday (3rd) and Easter Monday (6th) are not
        // working days, so day 1 is Tuesday 7 April and day 5 is Monday 13 April.
        let calendar = WorkingDayCalendar::england_and_wales();
        let received = date("2026-04-02");
        assert_eq!(calendar.add_working_days(received, 1), date("2026-04-07"));
        assert_eq!(calendar.add_working_days(received, 5), date("2026-04-13"));
        assert_eq!(calendar.add_working_days(received, 10), date("2026-04-20"));
    }

    #[test]
    fn christmas_2026_with_a_closure_day() {
        // Friday 25 December 2026 and Monday 28 December (Boxing Day substitute) are holidays;
        // the landlord also closes on 29 December.
        let calendar =
            WorkingDayCalendar::england_and_wales().with_closure_days([date("2026-12-29")]);
        assert_eq!(
            calendar.add_working_days(date("2026-12-24"), 1),
            date("2026-12-30")
        );
        assert_ne!(
            calendar.version(),
            WorkingDayCalendar::england_and_wales().version()
        );
    }

    #[test]
    fn receipt_on_a_weekend_counts_from_the_next_working_day() {
        let calendar = WorkingDayCalendar::england_and_wales();
        // Saturday 7 November 2026: day 1 is Monday the 9th, day 5 Friday the 13th.
        assert_eq!(
            calendar.add_working_days(date("2026-11-07"), 5),
            date("2026-11-13")
        );
    }

    #[test]
    fn replaceable_by_gov_uk_json() {
        let json = r#"{"england-and-wales":{"division":"england-and-wales","events":[
            {"title":"Made-up day","date":"2031-01-06","notes":"","bunting":false}]},
            "scotland":{"division":"scotland","events":[]}}"#;
        let calendar =
            WorkingDayCalendar::from_gov_uk_json(json).unwrap_or_else(|error| panic!("{error}"));
        assert!(!calendar.is_working_day(date("2031-01-06")));
        assert!(
            calendar
                .version()
                .starts_with("england-and-wales/2031-2031/1+0/")
        );
        assert!(matches!(
            WorkingDayCalendar::from_gov_uk_json(r#"{"scotland":{"events":[]}}"#),
            Err(CalendarError::MissingDivision)
        ));
        assert!(matches!(
            WorkingDayCalendar::from_gov_uk_json(
                r#"{"england-and-wales":{"events":[{"date":"2031-13-01"}]}}"#
            ),
            Err(CalendarError::InvalidDate(_))
        ));
    }

    #[test]
    fn england_date_follows_british_summer_time() {
        let late_evening_utc: DateTime<Utc> = "2026-07-01T23:30:00Z".parse().unwrap_or_default();
        assert_eq!(england_date(late_evening_utc), date("2026-07-02"));
        let winter: DateTime<Utc> = "2026-12-01T23:30:00Z".parse().unwrap_or_default();
        assert_eq!(england_date(winter), date("2026-12-01"));
    }

    proptest! {
        #[test]
        fn deadlines_never_land_on_a_weekend_or_bank_holiday(
            offset in 0i64..(11 * 366), working_days in 1u32..40
        ) {
            let calendar = WorkingDayCalendar::england_and_wales();
            let start = date("2020-01-01") + chrono::Duration::days(offset);
            let due = calendar.add_working_days(start, working_days);
            prop_assert!(calendar.is_working_day(due));
            prop_assert!(due > start);
            prop_assert_eq!(calendar.working_days_between(start, due), i64::from(working_days));
            prop_assert_eq!(calendar.working_days_between(due, start), -i64::from(working_days));
        }

        #[test]
        fn adding_is_monotonic(offset in 0i64..(11 * 366), a in 0u32..30, b in 0u32..30) {
            let calendar = WorkingDayCalendar::england_and_wales();
            let start = date("2020-01-01") + chrono::Duration::days(offset);
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(calendar.add_working_days(start, low) <= calendar.add_working_days(start, high));
            prop_assert_eq!(
                calendar.add_working_days(calendar.add_working_days(start, low), high - low),
                calendar.add_working_days(start, high)
            );
        }
    }
}
