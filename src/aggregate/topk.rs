//! A bounded "top values" counter (space-saving, Metwally et al. 2005) for attributions: which
//! identities, user agents and error codes made the calls. Memory is fixed per counter whatever
//! the number of distinct values an attacker sends; the heaviest values are counted exactly
//! while they stay heavy, and an evicted value's count is an upper bound, as the algorithm promises.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Counts of the most frequent values, at most `capacity` of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopValues {
    entries: Vec<(Arc<str>, u64)>,
}

impl TopValues {
    /// Adds `count` occurrences of `value`, evicting the smallest entry when full.
    pub fn add(&mut self, value: &Arc<str>, count: u64, capacity: usize) {
        if let Some(entry) = self.entries.iter_mut().find(|(v, _)| v == value) {
            entry.1 += count;
            return;
        }
        if self.entries.len() < capacity.max(1) {
            self.entries.push((Arc::clone(value), count));
            return;
        }
        // Space-saving: the new value inherits the evicted minimum's count.
        if let Some(min) = self
            .entries
            .iter_mut()
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        {
            *min = (Arc::clone(value), min.1 + count);
        }
    }

    /// Adds every entry of `other` into `self`.
    pub fn merge(&mut self, other: &TopValues, capacity: usize) {
        for (value, count) in &other.entries {
            self.add(value, *count, capacity);
        }
    }

    /// Entries by count descending, then value ascending (deterministic).
    pub fn ranked(&self) -> Vec<(Arc<str>, u64)> {
        let mut out = self.entries.clone();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One [`TopValues`] per [`crate::series::Attribute`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributions {
    /// Indexed by [`crate::series::Attribute::index`].
    pub by_attribute: [TopValues; 3],
}

impl Attributions {
    /// Adds every attribute of `other`.
    pub fn merge(&mut self, other: &Attributions, capacity: usize) {
        for (mine, theirs) in self.by_attribute.iter_mut().zip(&other.by_attribute) {
            mine.merge(theirs, capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Arc<str> {
        Arc::from(v)
    }

    #[test]
    fn exact_while_under_capacity_and_ranked_deterministically() {
        let mut t = TopValues::default();
        for (v, c) in [("b", 2), ("a", 2), ("c", 5), ("a", 1)] {
            t.add(&s(v), c, 4);
        }
        let r: Vec<_> = t
            .ranked()
            .into_iter()
            .map(|(v, c)| (v.to_string(), c))
            .collect();
        let expected: Vec<(String, u64)> = vec![("c".into(), 5), ("a".into(), 3), ("b".into(), 2)];
        assert_eq!(r, expected);
    }

    #[test]
    fn bounded_and_heavy_hitter_survives_a_flood_of_distinct_values() {
        let mut t = TopValues::default();
        // Space-saving keeps every value above N / capacity = 12000 / 8 = 1500 calls.
        t.add(&s("heavy"), 2000, 8);
        for i in 0..10_000 {
            t.add(&s(&format!("attacker-{i}")), 1, 8);
        }
        assert!(t.entries.len() <= 8);
        let top = t.ranked();
        assert_eq!(&*top[0].0, "heavy");
        assert_eq!(top[0].1, 2000);
        // Space-saving never under-counts: total mass is preserved.
        let total: u64 = t.entries.iter().map(|e| e.1).sum();
        assert_eq!(total, 12_000);
    }
}
