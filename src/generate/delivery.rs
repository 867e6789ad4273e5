//! Delivery of one account-region's records to S3-layout files: records wait, already serialised,
//! in the 5-minute slot of their delivery time; a slot is written as soon as no later call can
//! land in it, as gzip `{"Records":[...]}` with its records shuffled.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::generate::catalogue::mix64;
use crate::generate::GenerateError;
use crate::series::{minute_to_datetime, Minute};

/// A file holds at most this many records; a busier slot is split into several files.
const MAX_RECORDS_PER_FILE: usize = 2500;

/// When a record is delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// Minute in the file name (a multiple of 5).
    pub file_minute: Minute,
    /// Minute of the file that delivers it a second time, if any.
    pub duplicate_minute: Option<Minute>,
    /// Delivered 20 minutes or more after the call.
    pub late: bool,
}

/// Records waiting for one delivery slot.
#[derive(Default)]
struct Slot {
    bytes: Vec<u8>,
    ranges: Vec<(usize, usize)>,
}

/// Counts of what an outbox wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliveryCounts {
    pub files: u64,
    pub records: u64,
    pub duplicates: u64,
    pub late_records: u64,
}

/// The pending files of one account-region.
pub(crate) struct Outbox {
    dir: PathBuf,
    account: String,
    region: String,
    name_seed: u64,
    slots: BTreeMap<Minute, Slot>,
    spare: Vec<Slot>,
    scratch: Vec<u8>,
    created_dir: Option<PathBuf>,
    gzip: Gzip,
    /// Delivery gaps: a file due in `[from, to)` is delivered at `to`.
    gaps: Vec<(Minute, Minute)>,
    pub counts: DeliveryCounts,
}

impl Outbox {
    /// An outbox writing under `root/AWSLogs/<account>/CloudTrail/<region>/`; `name_seed` decides
    /// file-name suffixes and record order, independently of how many records a file holds.
    pub(crate) fn new(root: &Path, account: &str, region: &str, name_seed: u64) -> Self {
        Outbox {
            dir: root
                .join("AWSLogs")
                .join(account)
                .join("CloudTrail")
                .join(region),
            account: account.to_string(),
            region: region.to_string(),
            name_seed,
            slots: BTreeMap::new(),
            spare: Vec::new(),
            scratch: Vec::with_capacity(4096),
            created_dir: None,
            gzip: Gzip::new(),
            gaps: Vec::new(),
            counts: DeliveryCounts::default(),
        }
    }

    /// No file is delivered from `from` to `to` (exclusive): what was due is delivered at `to`.
    pub(crate) fn delay_delivery(&mut self, from: Minute, to: Minute) {
        self.gaps.push((from, to));
    }

    fn slot(&mut self, minute: Minute) -> &mut Slot {
        let spare = &mut self.spare;
        self.slots
            .entry(minute)
            .or_insert_with(|| spare.pop().unwrap_or_default())
    }

    /// Serialises a record into the slot(s) that deliver it.
    pub(crate) fn push<T: Serialize>(
        &mut self,
        record: &T,
        delivery: Delivery,
    ) -> Result<(), GenerateError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        serde_json::to_writer(&mut scratch, record).map_err(GenerateError::Serialize)?;
        self.deliver(delivery.file_minute, &scratch);
        self.counts.records += 1;
        if delivery.late {
            self.counts.late_records += 1;
        }
        if let Some(minute) = delivery.duplicate_minute {
            self.deliver(minute, &scratch);
            self.counts.duplicates += 1;
        }
        self.scratch = scratch;
        Ok(())
    }

    fn deliver(&mut self, minute: Minute, record: &[u8]) {
        let minute = self
            .gaps
            .iter()
            .find(|(from, to)| (*from..*to).contains(&minute))
            .map_or(minute, |&(_, to)| to);
        let slot = self.slot(minute);
        let start = slot.bytes.len();
        slot.bytes.extend_from_slice(record);
        slot.ranges.push((start, slot.bytes.len()));
    }

    /// Writes every slot whose delivery minute is at or before `minute`.
    pub(crate) fn flush_through(&mut self, minute: Minute) -> Result<(), GenerateError> {
        while let Some(entry) = self.slots.first_entry() {
            if *entry.key() > minute {
                break;
            }
            let (file_minute, slot) = entry.remove_entry();
            self.write_slot(file_minute, slot)?;
        }
        Ok(())
    }

    /// Writes every remaining slot.
    pub(crate) fn finish(&mut self) -> Result<(), GenerateError> {
        self.flush_through(Minute::MAX)
    }

    fn write_slot(&mut self, file_minute: Minute, mut slot: Slot) -> Result<(), GenerateError> {
        let Some(time) = minute_to_datetime(file_minute) else {
            return Err(GenerateError::InvalidOptions(format!(
                "delivery minute {file_minute} is out of range"
            )));
        };
        let day_dir = self.dir.join(time.format("%Y/%m/%d").to_string());
        if self.created_dir.as_ref() != Some(&day_dir) {
            fs::create_dir_all(&day_dir).map_err(|source| GenerateError::Io {
                path: day_dir.clone(),
                source,
            })?;
            self.created_dir = Some(day_dir.clone());
        }
        let stamp = time.format("%Y%m%dT%H%MZ").to_string();
        let mut rng = ChaCha8Rng::seed_from_u64(mix64(self.name_seed ^ mix64(file_minute as u64)));
        slot.ranges.shuffle(&mut rng);
        for chunk in slot.ranges.chunks(MAX_RECORDS_PER_FILE) {
            let suffix = random_suffix(&mut rng);
            let path = day_dir.join(format!(
                "{}_CloudTrail_{}_{}_{}.json.gz",
                self.account,
                self.region,
                stamp,
                suffix_str(&suffix)
            ));
            self.gzip
                .write_file(&path, &slot.bytes, chunk)
                .map_err(|source| GenerateError::Io {
                    path: path.clone(),
                    source,
                })?;
            self.counts.files += 1;
        }
        slot.bytes.clear();
        slot.ranges.clear();
        self.spare.push(slot);
        Ok(())
    }
}

const SUFFIX_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_suffix(rng: &mut ChaCha8Rng) -> [u8; 16] {
    let mut out = [b'A'; 16];
    for b in &mut out {
        *b = SUFFIX_ALPHABET[rng.gen_range(0..SUFFIX_ALPHABET.len())];
    }
    out
}

fn suffix_str(suffix: &[u8; 16]) -> &str {
    std::str::from_utf8(suffix).unwrap_or("AAAAAAAAAAAAAAAA")
}

/// A gzip writer that keeps its deflate state from file to file (a fresh state per file costs
/// more than compressing a small file).
pub(crate) struct Gzip {
    compress: Compress,
    plain: Vec<u8>,
    packed: Vec<u8>,
}

/// gzip header: magic, deflate, no flags, no mtime (reproducible), fastest (XFL 4), OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];

impl Gzip {
    pub(crate) fn new() -> Self {
        Gzip {
            compress: Compress::new(Compression::fast(), false),
            plain: Vec::with_capacity(1 << 20),
            packed: Vec::with_capacity(1 << 18),
        }
    }

    /// Writes `{"Records":[...]}` of the given records to `path` as one gzip member.
    fn write_file(
        &mut self,
        path: &Path,
        bytes: &[u8],
        ranges: &[(usize, usize)],
    ) -> std::io::Result<()> {
        self.plain.clear();
        self.plain.extend_from_slice(b"{\"Records\":[");
        for (i, &(start, end)) in ranges.iter().enumerate() {
            if i > 0 {
                self.plain.push(b',');
            }
            if let Some(record) = bytes.get(start..end) {
                self.plain.extend_from_slice(record);
            }
        }
        self.plain.extend_from_slice(b"]}");

        let mut crc = Crc::new();
        crc.update(&self.plain);
        self.compress.reset();
        self.packed.clear();
        self.packed.extend_from_slice(&GZIP_HEADER);
        let mut input: &[u8] = &self.plain;
        loop {
            if self.packed.capacity() - self.packed.len() < 4096 {
                self.packed.reserve(self.packed.capacity().max(1 << 16));
            }
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.packed, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            let consumed = (self.compress.total_in() - before) as usize;
            input = input.get(consumed..).unwrap_or_default();
            if status == Status::StreamEnd {
                break;
            }
        }
        self.packed.extend_from_slice(&crc.sum().to_le_bytes());
        self.packed.extend_from_slice(&crc.amount().to_le_bytes());
        fs::write(path, &self.packed)
    }
}
