//! The state records each stage owns, and the version of each one's encoding. A stage that
//! changes the shape of what it stores bumps its record's [`StateRecord::VERSION`] in its own
//! module; a store holding another version of that record is refused with what to do (naming the
//! record), without a new version of the whole store's layout.
//!
//! The store keeps the versions it was written with under `m/records`; a store written before
//! records had versions (format 6 without `m/records`) holds every record at version 1.

use std::collections::BTreeMap;

/// A record a stage stores.
pub trait StateRecord {
    /// Its name in `m/records` and in messages.
    const KIND: &'static str;
    /// The version of its encoding (bumped by its owner when its shape changes).
    const VERSION: u16;
    /// The oldest version its owner still reads (and rewrites in this version when a writer
    /// opens the store); by default only its own.
    const READS_FROM: u16 = Self::VERSION;
}

fn entry<T: StateRecord>() -> (String, u16) {
    (T::KIND.to_owned(), T::VERSION)
}

fn oldest<T: StateRecord>() -> (String, u16) {
    (T::KIND.to_owned(), T::READS_FROM)
}

/// The oldest version of each record this build reads.
fn readable() -> BTreeMap<String, u16> {
    BTreeMap::from([
        oldest::<crate::series::SeriesKey>(),
        oldest::<crate::detect::SeriesDetector>(),
        oldest::<crate::detect::Announcement>(),
        oldest::<crate::detect::Profile>(),
        oldest::<crate::aggregate::Cell>(),
        oldest::<crate::aggregate::seen::DayFilter>(),
        oldest::<crate::insight::InsightRecord>(),
        oldest::<crate::suppress::Suppressed>(),
        oldest::<super::Meta>(),
    ])
}

/// Every record this build writes, with its version.
pub fn versions() -> BTreeMap<String, u16> {
    BTreeMap::from([
        entry::<crate::series::SeriesKey>(),
        entry::<crate::detect::SeriesDetector>(),
        entry::<crate::detect::Announcement>(),
        entry::<crate::detect::Profile>(),
        entry::<crate::aggregate::Cell>(),
        entry::<crate::aggregate::seen::DayFilter>(),
        entry::<crate::insight::InsightRecord>(),
        entry::<crate::suppress::Suppressed>(),
        entry::<super::Meta>(),
    ])
}

/// What a store written before records had versions holds: every record at version 1.
pub fn unversioned() -> BTreeMap<String, u16> {
    versions().into_keys().map(|k| (k, 1)).collect()
}

/// The first record whose stored version this build does not read (newer than its own, older
/// than the oldest its owner reads, or a kind it does not know): (kind, stored, this build's
/// version, or None for an unknown kind).
pub fn mismatch(stored: &BTreeMap<String, u16>) -> Option<(String, u16, Option<u16>)> {
    let (ours, oldest) = (versions(), readable());
    stored
        .iter()
        .find_map(|(kind, &found)| match (ours.get(kind), oldest.get(kind)) {
            (Some(&v), Some(&from)) if (from..=v).contains(&found) => None,
            (other, _) => Some((kind.clone(), found, other.copied())),
        })
}

/// The records stored in an older version than this build writes: (kind, stored version).
pub fn older(stored: &BTreeMap<String, u16>) -> Vec<(String, u16)> {
    let ours = versions();
    stored
        .iter()
        .filter(|(kind, found)| ours.get(*kind).is_some_and(|v| *found < v))
        .map(|(kind, &found)| (kind.clone(), found))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_version_or_an_unknown_kind_is_a_mismatch() {
        assert_eq!(mismatch(&versions()), None);
        assert_eq!(mismatch(&BTreeMap::new()), None);
        let mut stored = versions();
        stored.insert("detector".into(), 99);
        assert_eq!(
            mismatch(&stored),
            Some(("detector".into(), 99, Some(versions()["detector"])))
        );
        let mut stored = versions();
        stored.insert("principal rates".into(), 1);
        assert_eq!(mismatch(&stored), Some(("principal rates".into(), 1, None)));
        // Series keys of version 1 (before event categories) are read, and are older.
        let stored = unversioned();
        assert_eq!(mismatch(&stored), None);
        assert_eq!(older(&stored), vec![("series key".to_string(), 1)]);
        assert!(older(&versions()).is_empty());
        let mut stored = versions();
        stored.insert("series key".into(), 0);
        assert!(mismatch(&stored).is_some());
    }
}
