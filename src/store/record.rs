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
}

fn entry<T: StateRecord>() -> (String, u16) {
    (T::KIND.to_owned(), T::VERSION)
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
        entry::<super::Meta>(),
    ])
}

/// What a store written before records had versions holds: every record at version 1.
pub fn unversioned() -> BTreeMap<String, u16> {
    versions().into_keys().map(|k| (k, 1)).collect()
}

/// The first record whose stored version this build does not read: (kind, stored, this build's
/// version, or None for a kind it does not know).
pub fn mismatch(stored: &BTreeMap<String, u16>) -> Option<(String, u16, Option<u16>)> {
    let ours = versions();
    stored
        .iter()
        .find_map(|(kind, &found)| match ours.get(kind) {
            Some(&v) if v == found => None,
            other => Some((kind.clone(), found, other.copied())),
        })
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
    }
}
