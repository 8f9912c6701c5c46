//! Calendar months, the unit every performance counter is kept in.

use chrono::{Datelike, NaiveDate};

/// A calendar month such as 2026-04. Months order as dates do, and their text form
/// (`YYYY-MM`) orders the same way, which is how they are stored and compared in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

/// Why a text is not a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a month of the form YYYY-MM")]
pub struct InvalidMonth {
    pub value: String,
}

impl Month {
    /// The month, if `month` is 1 to 12 and `year` has four digits (so the text form sorts).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((0..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Reads `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, InvalidMonth> {
        let invalid = || InvalidMonth {
            value: text.to_owned(),
        };
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4
            || month.len() != 2
            || !year
                .bytes()
                .chain(month.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let year = year.parse().map_err(|_| invalid())?;
        let month = month.parse().map_err(|_| invalid())?;
        Self::new(year, month).ok_or_else(invalid)
    }

    pub fn year(self) -> i32 {
        self.year
    }

    /// 1 to 12.
    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or(NaiveDate::MAX)
    }

    /// The month after this one (December 9999 has none and returns itself).
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self::new(self.year + 1, 1).unwrap_or(self)
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = InvalidMonth;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_yyyy_mm() {
        let month = Month::parse("2026-04");
        assert_eq!(
            month,
            Ok(Month {
                year: 2026,
                month: 4
            })
        );
        assert_eq!(month.map(|m| m.to_string()), Ok("2026-04".to_owned()));
        for bad in [
            "2026-4",
            "2026-13",
            "2026-00",
            "26-04",
            "2026/04",
            "2026-04-01",
            "",
            "+026-04",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_and_last_days() {
        let february = Month::parse("2028-02").unwrap_or(Month { year: 0, month: 1 });
        assert_eq!(february.first_day().to_string(), "2028-02-01");
        assert_eq!(february.last_day().to_string(), "2028-02-29");
        let december = Month::of(february.last_day().with_month(12).unwrap_or_default());
        assert_eq!(december.next().to_string(), "2029-01");
        assert_eq!(december.last_day().to_string(), "2028-12-31");
    }

    #[test]
    fn text_order_is_month_order() {
        let months = ["2025-12", "2026-01", "2026-10", "2026-02"].map(|m| Month::parse(m).ok());
        let mut by_value = months.to_vec();
        by_value.sort();
        let mut by_text = months.to_vec();
        by_text.sort_by_key(|m| m.map(|m| m.to_string()));
        assert_eq!(by_value, by_text);
    }
}
