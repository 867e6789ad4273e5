//! Re-deliveries older than the exact dedup window. CloudTrail delivers some records more than
//! once, and copies of a trail (an EventBridge archive, a shipper's re-send, public example
//! sets) repeat records days apart; counted twice, they inflate a rate. The eventIDs of the last
//! `ingest.dedup_window_minutes` are held exactly; older ones go into one Bloom filter per UTC
//! day of their event time, kept for `ingest.dedup_days` days, with memory bounded by the
//! number of records and a stated false-positive rate: a record first seen behind the window
//! is taken for a re-delivery with probability at most `2 * dedup_false_positive`.

use serde::{Deserialize, Serialize};

/// Items the first stage of a day's filter holds before a larger one is added.
const FIRST_CAPACITY: u64 = 1 << 14;
/// Each stage holds this many times the items of the one before.
const GROWTH: u64 = 4;

/// One Bloom filter of fixed capacity over already-hashed 64-bit ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stage {
    bits: Vec<u64>,
    hashes: u32,
    capacity: u64,
    items: u64,
}

impl Stage {
    /// A stage for `capacity` items at false-positive rate `p` (m = -n ln p / ln² 2 bits,
    /// k = m/n ln 2 hashes).
    fn new(capacity: u64, p: f64) -> Stage {
        let (words, hashes) = Stage::shape(capacity, p);
        Stage {
            bits: vec![0; words as usize],
            hashes,
            capacity,
            items: 0,
        }
    }

    /// Words of bits and hashes of a stage for `capacity` items at rate `p`.
    fn shape(capacity: u64, p: f64) -> (u64, u32) {
        let ln2 = std::f64::consts::LN_2;
        let bits = (-(capacity as f64) * p.ln() / (ln2 * ln2)).ceil().max(64.0) as u64;
        let words = bits.div_ceil(64);
        let hashes = ((words * 64) as f64 / capacity as f64 * ln2)
            .round()
            .clamp(1.0, 32.0) as u32;
        (words, hashes)
    }

    /// Capacity and false-positive rate of stage `n` of a filter at rate `p`.
    fn nth(n: u32, p: f64) -> (u64, f64) {
        let capacity = FIRST_CAPACITY.saturating_mul(GROWTH.saturating_pow(n));
        let rate = p / f64::from(2u32.saturating_pow(n.min(30)));
        (capacity, rate.max(f64::MIN_POSITIVE))
    }

    /// Bit positions of `id` (double hashing: h1 + i·h2, Kirsch and Mitzenmacher).
    fn positions(&self, id: u64) -> impl Iterator<Item = usize> + '_ {
        let m = (self.bits.len() * 64) as u64;
        let h1 = id;
        let h2 = id.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..u64::from(self.hashes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn contains(&self, id: u64) -> bool {
        self.positions(id).all(|b| {
            self.bits
                .get(b / 64)
                .is_some_and(|w| w & (1 << (b % 64)) != 0)
        })
    }

    fn insert(&mut self, id: u64) {
        let positions: Vec<usize> = self.positions(id).collect();
        for b in positions {
            if let Some(w) = self.bits.get_mut(b / 64) {
                *w |= 1 << (b % 64);
            }
        }
        self.items += 1;
    }
}

/// The eventIDs of one day: a scalable Bloom filter (stages of growing capacity, each at half
/// the false-positive rate of the one before, so that the sum stays below twice the first's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedDayFilter")]
pub struct DayFilter {
    stages: Vec<Stage>,
    false_positive: f64,
}

/// A day filter as decoded, before its shape is checked: a stage without bits would divide by
/// zero, one without hashes would hold every id (every record a "repeat").
#[derive(Deserialize)]
struct UncheckedDayFilter {
    stages: Vec<Stage>,
    false_positive: f64,
}

impl TryFrom<UncheckedDayFilter> for DayFilter {
    type Error = String;

    fn try_from(f: UncheckedDayFilter) -> Result<DayFilter, String> {
        if !(f.false_positive > 0.0 && f.false_positive < 1.0) {
            return Err(format!(
                "eventID filter with false-positive rate {}",
                f.false_positive
            ));
        }
        // Each stage has exactly the shape the filter gives it: the next stage's size follows
        // from the last one's, so a stored filter cannot make an insert allocate without bound.
        for (i, s) in f.stages.iter().enumerate() {
            let (capacity, p) = Stage::nth(i as u32, f.false_positive);
            let (words, hashes) = Stage::shape(capacity, p);
            if s.capacity != capacity
                || s.bits.len() as u64 != words
                || s.hashes != hashes
                || s.items > s.capacity
            {
                return Err(format!(
                    "eventID filter stage {i}: {} words, {} hashes, {} of {} items (expected {words} words, {hashes} hashes, {capacity} items)",
                    s.bits.len(),
                    s.hashes,
                    s.items,
                    s.capacity
                ));
            }
        }
        Ok(DayFilter {
            stages: f.stages,
            false_positive: f.false_positive,
        })
    }
}

impl DayFilter {
    /// An empty filter whose false-positive rate stays below `2 * false_positive`.
    pub fn new(false_positive: f64) -> DayFilter {
        DayFilter {
            stages: Vec::new(),
            false_positive,
        }
    }

    /// Whether `id` may have been inserted (never false for one that was).
    pub fn contains(&self, id: u64) -> bool {
        self.stages.iter().any(|s| s.contains(id))
    }

    /// Inserts `id`; returns false when it was (probably) there already.
    pub fn insert(&mut self, id: u64) -> bool {
        if self.contains(id) {
            return false;
        }
        let full = self.stages.last().is_none_or(|s| s.items >= s.capacity);
        if full {
            let (capacity, p) = Stage::nth(self.stages.len() as u32, self.false_positive);
            self.stages.push(Stage::new(capacity, p));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(id);
        }
        true
    }

    /// Ids inserted.
    pub fn len(&self) -> u64 {
        self.stages
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.items))
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of filter held (for memory accounting).
    pub fn bytes(&self) -> usize {
        self.stages
            .iter()
            .fold(0usize, |n, s| n.saturating_add(s.bits.len() * 8))
    }
}

impl crate::store::record::StateRecord for DayFilter {
    const KIND: &'static str = "eventID day filter";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_inserted_id_is_found_and_strangers_rarely_are() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut f = DayFilter::new(1e-4);
        let ids: Vec<u64> = (0..200_000).map(|_| rng.gen()).collect();
        for &id in &ids {
            assert!(f.insert(id) || f.contains(id));
        }
        assert!(ids.iter().all(|&id| f.contains(id)), "a false negative");
        // 200,000 ids need stages of 16,384, 65,536 and 262,144 items.
        assert_eq!(f.stages.len(), 3);
        let trials = 1_000_000;
        let false_positives = (0..trials).filter(|_| f.contains(rng.gen())).count();
        let rate = false_positives as f64 / trials as f64;
        // Bound: 1e-4 + 5e-5 + 2.5e-5 < 2e-4 (stages filled to capacity; the last is not).
        assert!(rate < 2e-4, "false-positive rate {rate}");
        // Memory: about 19 bits an item at 1e-4, 2.5 times the items held at most.
        let bytes = f.bytes() as f64;
        assert!(bytes < 200_000.0 * 2.5 * 2.6, "{bytes} bytes");
    }

    #[test]
    fn a_second_insert_says_it_was_there() {
        let mut f = DayFilter::new(1e-6);
        assert!(f.insert(42));
        assert!(!f.insert(42));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_decoded_filter_of_impossible_shape_is_refused() {
        let mut good = DayFilter::new(1e-6);
        good.insert(7);
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<DayFilter>(&bytes).unwrap(), good);
        for broken in [
            DayFilter {
                stages: vec![Stage {
                    bits: vec![],
                    ..good.stages[0].clone()
                }],
                false_positive: 1e-6,
            },
            DayFilter {
                stages: vec![Stage {
                    hashes: 0,
                    ..good.stages[0].clone()
                }],
                false_positive: 1e-6,
            },
            DayFilter {
                stages: good.stages.clone(),
                false_positive: f64::NAN,
            },
            // Full and claiming a huge capacity: the next insert would allocate without bound.
            DayFilter {
                stages: vec![Stage {
                    capacity: u64::MAX,
                    items: u64::MAX,
                    ..good.stages[0].clone()
                }],
                false_positive: 1e-6,
            },
        ] {
            let bytes = postcard::to_allocvec(&broken).unwrap();
            assert!(
                postcard::from_bytes::<DayFilter>(&bytes).is_err(),
                "{broken:?}"
            );
        }
    }
}
