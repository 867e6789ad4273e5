//! Series that leave memory while they are dormant. An organization trail holds 10⁵ series and
//! most are idle at any moment (an API called once a week, an error code seen once); a
//! dormant series (nothing open, and no hour of its baseline expecting enough calls for
//! silence to be a fall) would only move its next minute if advanced, so once its state is in
//! the store it is paged out, keeping only its bursts (the principals' habits read every
//! series' bursts each day). It is read back from the store when calls come in for it, when
//! late calls change its history, or when an error series of its API needs its calls.
//!
//! Paging rests on the assumption the detector's quiet-stretch skip already makes: without
//! calls an hour's expected rate only falls as the window slides, so a series too quiet for a
//! fall stays so until its next call.

use std::collections::BTreeMap;

use super::bursts::Bursts;
use super::episode::SeriesDetector;
use super::{Announcement, Coverage, Detector, Profile};
use crate::aggregate::{Pending, Registry};
use crate::series::Minute;

/// A series' detector: in memory, or paged out to the store.
#[derive(Debug, Clone)]
pub enum Slot {
    /// In memory (boxed: a paged-out slot costs a few words).
    Resident(Box<SeriesDetector>),
    /// In the store as of the last checkpoint, with the series' bursts kept here.
    Paged(Bursts),
}

/// What besides its own state says whether a series may leave memory: the detector's final
/// minute, the pending (not yet final) calls and the announced rises.
pub struct PageOut<'a> {
    /// The profile in force.
    pub profile: &'a Profile,
    /// The series and account/regions known.
    pub registry: &'a Registry,
    /// Every minute before this one is final and processed.
    pub final_before: Option<Minute>,
    /// Calls of minutes not final yet.
    pub pending: &'a Pending,
    /// Rises announced and still open.
    pub announced: &'a BTreeMap<u32, Announcement>,
}

impl PageOut<'_> {
    /// Whether series `id`, whose state `d` is in the store as it is, may be paged out:
    /// advanced to the final minute, with no pending calls and no announced rise, and dormant.
    pub fn allows(&self, id: u32, d: &mut SeriesDetector) -> bool {
        let (Some(at), Some(first_minute)) = (self.final_before, self.registry.first_minute_of(id))
        else {
            return false;
        };
        d.next_minute() == Some(at)
            && !self.pending.series.contains_key(&id)
            && !self.announced.contains_key(&id)
            && d.is_dormant(at, Coverage { first_minute }, self.profile)
    }
}

impl Slot {
    /// The slot of a series paged out: its bursts only.
    pub fn paged(d: &SeriesDetector) -> Slot {
        let mut bursts = d.bursts().clone();
        bursts.shrink();
        Slot::Paged(bursts)
    }

    /// The detector, when in memory.
    pub fn resident(&self) -> Option<&SeriesDetector> {
        match self {
            Slot::Resident(d) => Some(d),
            Slot::Paged(_) => None,
        }
    }

    /// The detector, when in memory.
    pub fn resident_mut(&mut self) -> Option<&mut SeriesDetector> {
        match self {
            Slot::Resident(d) => Some(d),
            Slot::Paged(_) => None,
        }
    }

    /// The series' burst history, in memory or paged out.
    pub fn bursts(&self) -> &Bursts {
        match self {
            Slot::Resident(d) => d.bursts(),
            Slot::Paged(b) => b,
        }
    }
}

impl Detector {
    /// The detector of series `id`, when it is in memory.
    pub fn series(&self, id: u32) -> Option<&SeriesDetector> {
        self.series.get(id as usize).and_then(Slot::resident)
    }

    /// The series in memory, with their ids.
    pub fn resident(&self) -> impl Iterator<Item = (u32, &SeriesDetector)> + '_ {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, s.resident()?)))
    }

    /// Number of series paged out.
    pub fn paged_out(&self) -> usize {
        self.series
            .iter()
            .filter(|s| matches!(s, Slot::Paged(_)))
            .count()
    }

    /// Of the series `ids` (about to take calls or late calls), and of the call series of
    /// their API and of every error series in memory (whose error share reads its API's
    /// calls), the ones paged out, ascending: what must be read back before advancing.
    pub fn paged_among(
        &mut self,
        ids: impl IntoIterator<Item = u32>,
        registry: &Registry,
    ) -> Vec<u32> {
        self.grow(registry);
        let mut wanted: Vec<u32> = ids.into_iter().collect();
        let calls_of = |id: u32| self.apis.calls_of.get(id as usize).copied().flatten();
        let of_wanted: Vec<u32> = wanted.iter().filter_map(|&id| calls_of(id)).collect();
        wanted.extend(of_wanted);
        wanted.extend(
            self.series
                .iter()
                .enumerate()
                .filter(|(_, s)| s.resident().is_some())
                .filter_map(|(id, _)| calls_of(id as u32)),
        );
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|&id| matches!(self.series.get(id as usize), Some(Slot::Paged(_))));
        wanted
    }

    /// Puts back in memory a series read from the store, standing at the detector's final
    /// minute (see `Store::detector`): its stored state is the one it was paged out with, and
    /// it would have skipped every minute since.
    pub fn page_in(&mut self, id: u32, state: SeriesDetector) {
        if let Some(slot) = self.series.get_mut(id as usize) {
            if matches!(slot, Slot::Paged(_)) {
                *slot = Slot::Resident(Box::new(state));
            }
        }
    }

    /// Pages out every series [`PageOut::allows`] whose state is in the store as it is in
    /// memory (call it right after a checkpoint). Returns how many were paged out.
    pub fn page_out_dormant(&mut self, registry: &Registry, pending: &Pending) -> usize {
        let rule = PageOut {
            profile: &self.profile,
            registry,
            final_before: self.final_before,
            pending,
            announced: &self.announced,
        };
        let mut paged = 0;
        for (id, slot) in self.series.iter_mut().enumerate() {
            if let Slot::Resident(d) = slot {
                if rule.allows(id as u32, d) {
                    *slot = Slot::paged(d);
                    paged += 1;
                }
            }
        }
        paged
    }
}
