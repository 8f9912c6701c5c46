//! Which visit rows a catch-up from empty read models has written so far.
//!
//! Nine events in ten of a large log record a visit, and each used to cost a lookup of its
//! visit row before the row was written. A catch-up that starts from empty tables (a rebuild)
//! knows that only the rows it has written itself exist, so it keeps their ids in a Bloom filter:
//! a visit the filter has never seen has no row, and is not looked up. The filter may say "seen"
//! of a visit it has not seen (about one in a hundred), and then the row is looked up as before;
//! it never says "not seen" of one it has. At one byte and a bit per visit, ten million visits
//! take about 12 MB.

use fastbloom::BloomFilter;

/// Wrong "seen" answers, out of all: each costs one lookup, as every visit did before.
const FALSE_POSITIVE_RATE: f64 = 0.01;

pub(crate) struct WrittenVisits {
    /// Hashed with foldhash, which is several times faster than the default SipHash on short
    /// ids (the ids are the log's, not an attacker's choice).
    filter: BloomFilter<foldhash::fast::RandomState>,
}

impl WrittenVisits {
    /// A filter sized for `expected` visits (the events the catch-up will apply bound them).
    pub(crate) fn new(expected: usize) -> Self {
        Self {
            filter: BloomFilter::with_false_pos(FALSE_POSITIVE_RATE)
                .hasher(foldhash::fast::RandomState::default())
                .expected_items(expected.max(1)),
        }
    }

    /// Whether the visit may have a row: false only for a visit whose row was never written.
    pub(crate) fn may_have_row(&self, visit_id: &str) -> bool {
        self.filter.contains(visit_id)
    }

    pub(crate) fn insert(&mut self, visit_id: &str) {
        self.filter.insert(visit_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_visit_is_always_seen_and_most_others_are_not() {
        let mut written = WrittenVisits::new(10_000);
        for n in 0..10_000 {
            written.insert(&format!("visit-{n}"));
        }
        assert!((0..10_000).all(|n| written.may_have_row(&format!("visit-{n}"))));
        let wrongly_seen = (10_000..20_000)
            .filter(|n| written.may_have_row(&format!("visit-{n}")))
            .count();
        assert!(
            wrongly_seen < 300,
            "{wrongly_seen} of 10,000 unwritten visits seen"
        );
    }
}
