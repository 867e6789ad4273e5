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

/// One record this build knows: (kind, version written, oldest version read).
type Known = (&'static str, u16, u16);

fn known<T: StateRecord>() -> Known {
    (T::KIND, T::VERSION, T::READS_FROM)
}

/// Every record this build knows.
fn records() -> [Known; 9] {
    [
        known::<crate::series::SeriesKey>(),
        known::<crate::detect::SeriesDetector>(),
        known::<crate::detect::Announcement>(),
        known::<crate::detect::Profile>(),
        known::<crate::aggregate::Cell>(),
        known::<crate::aggregate::seen::DayFilter>(),
        known::<crate::insight::InsightRecord>(),
        known::<crate::suppress::Suppressed>(),
        known::<super::Meta>(),
    ]
}

/// Every record this build writes, with its version.
pub fn versions() -> BTreeMap<String, u16> {
    records()
        .into_iter()
        .map(|(kind, version, _)| (kind.to_owned(), version))
        .collect()
}

/// What a store written before records had versions holds: every record at version 1.
pub fn unversioned() -> BTreeMap<String, u16> {
    versions().into_keys().map(|k| (k, 1)).collect()
}

/// The first record whose stored version this build does not read (newer than its own, older
/// than the oldest its owner reads, or a kind it does not know): (kind, stored, this build's
/// version, or None for an unknown kind).
pub fn mismatch(stored: &BTreeMap<String, u16>) -> Option<(String, u16, Option<u16>)> {
    let ours = records();
    stored.iter().find_map(
        |(kind, &found)| match ours.iter().find(|(k, _, _)| k == kind) {
            Some(&(_, v, from)) if (from..=v).contains(&found) => None,
            other => Some((kind.clone(), found, other.map(|&(_, v, _)| v))),
        },
    )
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
