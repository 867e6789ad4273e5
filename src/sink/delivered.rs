//! What a network sink has delivered, by eventID, kept in the store's folder
//! (`sinks/<kind>-<hash of the destination>.delivered`, one eventID a line, synced after each):
//! a restart, a redelivery from the outbox or another sink's failure never sends a record to the
//! same destination twice.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::SinkError;

/// The eventIDs one destination has taken.
#[derive(Debug, Default)]
pub struct Delivered {
    ids: HashSet<String>,
    file: Option<(PathBuf, File)>,
}

impl Delivered {
    /// In memory only (no store folder: the run's own redeliveries are still recognised).
    pub fn in_memory() -> Delivered {
        Delivered::default()
    }

    /// Reads, then appends to, the file of `kind` and `destination` under `dir/sinks/` (the
    /// destination is hashed: a webhook URL is a secret).
    pub fn open(
        dir: &Path,
        kind: &str,
        destination: &str,
    ) -> Result<Delivered, (PathBuf, std::io::Error)> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(destination.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let folder = dir.join("sinks");
        let path = folder.join(format!("{kind}-{hex}.delivered"));
        let fail = |e| (path.clone(), e);
        std::fs::create_dir_all(&folder).map_err(fail)?;
        let mut ids = HashSet::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(fail)?;
                if !line.is_empty() {
                    ids.insert(line);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        Ok(Delivered {
            ids,
            file: Some((path, file)),
        })
    }

    /// Whether the record with this eventID was delivered.
    pub fn contains(&self, event_id: &str) -> bool {
        self.ids.contains(event_id)
    }

    /// Notes (durably, when a file is kept) that the record was delivered.
    pub fn record(&mut self, event_id: &str) -> Result<(), SinkError> {
        if let Some((path, file)) = &mut self.file {
            writeln!(file, "{event_id}")
                .and_then(|()| file.sync_data())
                .map_err(|source| SinkError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        self.ids.insert(event_id.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_delivered_is_known_again_after_a_restart_and_per_destination() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Delivered::open(dir.path(), "webhook", "https://a.example/secret").unwrap();
        assert!(!d.contains("e1"));
        d.record("e1").unwrap();
        assert!(d.contains("e1"));
        drop(d);
        let again = Delivered::open(dir.path(), "webhook", "https://a.example/secret").unwrap();
        assert!(again.contains("e1"));
        let other = Delivered::open(dir.path(), "webhook", "https://b.example/").unwrap();
        assert!(!other.contains("e1"));
        let names: Vec<String> = std::fs::read_dir(dir.path().join("sinks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("secret")), "{names:?}");
    }
}
