//! Reading a NAB corpus: the series (`data/<category>/<name>.csv`), the labelled windows
//! (`labels/combined_windows.json`), the profiles and published thresholds (`config/`), and the
//! published detectors' per-timestep outputs and per-file scores (`results/<detector>/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use super::scorer::{CostMatrix, Window};
use super::NabError;

/// One series of the corpus: its timestamps (seconds since the epoch, UTC) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The name NAB keys it by, e.g. `realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv`.
    pub name: String,
    /// Seconds since the epoch of each row.
    pub timestamps: Vec<i64>,
    /// Each row's value.
    pub values: Vec<f64>,
    /// Lines (1-based, header is line 1) whose timestamp is before the previous row's. NAB
    /// reads its files in file order and never sorts them, so such rows are kept where they are
    /// (`realKnownCause/machine_temperature_system_failure.csv` has one, line 10151).
    pub out_of_order: Vec<usize>,
}

/// A published detector's per-timestep output on one series.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedOutput {
    /// Seconds since the epoch of each row.
    pub timestamps: Vec<i64>,
    /// Each row's `anomaly_score`.
    pub anomaly_scores: Vec<f64>,
}

/// One row of a published `<detector>_<profile>_scores.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublishedScore {
    /// The threshold the detector used.
    pub threshold: f64,
    /// The raw score of the file.
    pub score: f64,
    /// Scored rows inside windows that were detections.
    pub tp: u64,
    /// Scored rows outside windows that were not.
    pub tn: u64,
    /// Scored rows outside windows that were detections.
    pub fp: u64,
    /// Scored rows inside windows that were not.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Rows of the file.
    pub total: u64,
}

/// NAB's timestamp, `2014-02-14 14:30:00` (labels add `.000000`), read as UTC seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
        .ok()
        .map(|t| t.and_utc().timestamp())
}

fn read_text(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|error| NabError::Read {
        path: path.display().to_string(),
        error,
    })
}

fn bad_line(path: &Path, line: usize, reason: impl Into<String>) -> NabError {
    NabError::Line {
        path: path.display().to_string(),
        line,
        reason: reason.into(),
    }
}

/// Reads a CSV whose header names `timestamp` and `column`: (timestamps, values of `column`).
fn read_columns(path: &Path, column: &str) -> Result<Columns, NabError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l)
        .ok_or_else(|| bad_line(path, 1, "empty file: expected a header"))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let ts_at = names
        .iter()
        .position(|n| *n == "timestamp")
        .ok_or_else(|| bad_line(path, 1, "the header has no `timestamp` column"))?;
    let value_at = names
        .iter()
        .position(|n| *n == column)
        .ok_or_else(|| bad_line(path, 1, format!("the header has no `{column}` column")))?;
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    let mut out_of_order = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let ts_text = fields
            .get(ts_at)
            .ok_or_else(|| bad_line(path, line_no, "missing the timestamp field"))?;
        let ts = parse_timestamp(ts_text).ok_or_else(|| {
            bad_line(
                path,
                line_no,
                format!("bad timestamp {ts_text:?} (expected YYYY-MM-DD HH:MM:SS)"),
            )
        })?;
        let value_text = fields
            .get(value_at)
            .ok_or_else(|| bad_line(path, line_no, format!("missing the `{column}` field")))?;
        let value: f64 = value_text
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                bad_line(
                    path,
                    line_no,
                    format!("`{column}` is not a finite number: {value_text:?}"),
                )
            })?;
        // Equal timestamps do occur (a local clock's DST change in two AWS series), and so does
        // a row out of order; NAB keeps both in file order, and so does this reader (the lines
        // out of order are reported).
        if timestamps.last().is_some_and(|&last| ts < last) {
            out_of_order.push(line_no);
        }
        timestamps.push(ts);
        values.push(value);
    }
    Ok(Columns {
        timestamps,
        values,
        out_of_order,
    })
}

/// The two columns of a CSV read by [`read_columns`], in file order.
struct Columns {
    timestamps: Vec<i64>,
    values: Vec<f64>,
    /// Lines whose timestamp is before the previous row's.
    out_of_order: Vec<usize>,
}

/// The series names (`<category>/<file>.csv`) under `dir/data`, sorted, optionally only one category.
pub fn series_names(dir: &Path, category: Option<&str>) -> Result<Vec<String>, NabError> {
    let data = dir.join("data");
    let mut names = Vec::new();
    let read_dir = |p: &Path| {
        std::fs::read_dir(p).map_err(|error| NabError::Read {
            path: p.display().to_string(),
            error,
        })
    };
    for entry in read_dir(&data)? {
        let entry = entry.map_err(|error| NabError::Read {
            path: data.display().to_string(),
            error,
        })?;
        let cat = entry.file_name().to_string_lossy().to_string();
        if !entry.path().is_dir() || category.is_some_and(|c| c != cat) {
            continue;
        }
        for file in read_dir(&entry.path())? {
            let file = file.map_err(|error| NabError::Read {
                path: entry.path().display().to_string(),
                error,
            })?;
            let name = file.file_name().to_string_lossy().to_string();
            if name.ends_with(".csv") {
                names.push(format!("{cat}/{name}"));
            }
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(NabError::Empty {
            path: data.display().to_string(),
        });
    }
    Ok(names)
}

/// Reads `dir/data/<name>`.
pub fn read_series(dir: &Path, name: &str) -> Result<Series, NabError> {
    let columns = read_columns(&dir.join("data").join(name), "value")?;
    Ok(Series {
        name: name.to_string(),
        timestamps: columns.timestamps,
        values: columns.values,
        out_of_order: columns.out_of_order,
    })
}

/// The labelled windows of every series, from `dir/labels/combined_windows.json`.
pub fn read_windows(dir: &Path) -> Result<BTreeMap<String, Vec<Window>>, NabError> {
    let path = dir.join("labels").join("combined_windows.json");
    let text = read_text(&path)?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| NabError::Json {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    for (name, windows) in raw {
        let mut parsed = Vec::with_capacity(windows.len());
        for w in windows {
            let bad = || NabError::Json {
                path: path.display().to_string(),
                message: format!("{name}: a window must be [start, end] timestamps, got {w:?}"),
            };
            let [start, end] = w.as_slice() else {
                return Err(bad());
            };
            let (Some(start), Some(end)) = (parse_timestamp(start), parse_timestamp(end)) else {
                return Err(bad());
            };
            if end < start {
                return Err(bad());
            }
            parsed.push(Window { start, end });
        }
        parsed.sort_by_key(|w| w.start);
        out.insert(name, parsed);
    }
    Ok(out)
}

/// The scoring profiles, from `dir/config/profiles.json`, by name.
pub fn read_profiles(dir: &Path) -> Result<BTreeMap<String, CostMatrix>, NabError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "CostMatrix")]
        cost_matrix: Weights,
    }
    #[derive(serde::Deserialize)]
    struct Weights {
        #[serde(rename = "tpWeight")]
        tp: f64,
        #[serde(rename = "fpWeight")]
        fp: f64,
        #[serde(rename = "fnWeight")]
        fn_: f64,
    }
    let path = dir.join("config").join("profiles.json");
    let text = read_text(&path)?;
    let raw: BTreeMap<String, Entry> = serde_json::from_str(&text).map_err(|e| NabError::Json {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, e) in raw {
        let w = e.cost_matrix;
        if ![w.tp, w.fp, w.fn_]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0)
        {
            return Err(NabError::Json {
                path: path.display().to_string(),
                message: format!("profile {name}: weights must be finite and >= 0"),
            });
        }
        out.insert(
            name,
            CostMatrix {
                tp_weight: w.tp,
                fp_weight: w.fp,
                fn_weight: w.fn_,
            },
        );
    }
    Ok(out)
}

/// The published threshold of `detector` under `profile`, from `dir/config/thresholds.json`.
pub fn read_threshold(dir: &Path, detector: &str, profile: &str) -> Result<f64, NabError> {
    let path = dir.join("config").join("thresholds.json");
    let text = read_text(&path)?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| NabError::Json {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    raw.get(detector)
        .and_then(|d| d.get(profile))
        .and_then(|p| p.get("threshold"))
        .and_then(|t| t.as_f64())
        .ok_or_else(|| NabError::Json {
            path: path.display().to_string(),
            message: format!("no numeric threshold for detector {detector}, profile {profile}"),
        })
}

fn published_output_path(dir: &Path, detector: &str, name: &str) -> PathBuf {
    // results/<detector>/<category>/<detector>_<file>.csv
    let (category, file) = name.split_once('/').unwrap_or(("", name));
    dir.join("results")
        .join(detector)
        .join(category)
        .join(format!("{detector}_{file}"))
}

/// A published detector's per-timestep `anomaly_score` on series `name`.
pub fn read_published_output(
    dir: &Path,
    detector: &str,
    name: &str,
) -> Result<PublishedOutput, NabError> {
    let columns = read_columns(&published_output_path(dir, detector, name), "anomaly_score")?;
    Ok(PublishedOutput {
        timestamps: columns.timestamps,
        anomaly_scores: columns.values,
    })
}

/// A published detector's per-file scores under `profile`, keyed by series name.
pub fn read_published_scores(
    dir: &Path,
    detector: &str,
    profile: &str,
) -> Result<BTreeMap<String, PublishedScore>, NabError> {
    let path = dir
        .join("results")
        .join(detector)
        .join(format!("{detector}_{profile}_scores.csv"));
    let text = read_text(&path)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, l)| l.split(',').map(str::trim).collect())
        .ok_or_else(|| bad_line(&path, 1, "empty file: expected a header"))?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad_line(&path, 1, format!("the header has no `{name}` column")))
    };
    let (file_at, threshold_at, score_at) = (col("File")?, col("Threshold")?, col("Score")?);
    let (tp_at, tn_at, fp_at, fn_at, total_at) = (
        col("TP")?,
        col("TN")?,
        col("FP")?,
        col("FN")?,
        col("Total_Count")?,
    );
    let mut out = BTreeMap::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(file) = fields.get(file_at) else {
            continue;
        };
        // The "Totals" row and blank lines name no series file.
        if !file.ends_with(".csv") {
            continue;
        }
        let number = |at: usize, what: &str| -> Result<f64, NabError> {
            fields
                .get(at)
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad_line(&path, line_no, format!("`{what}` is not a number")))
        };
        let count = |at: usize, what: &str| -> Result<u64, NabError> {
            fields
                .get(at)
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| bad_line(&path, line_no, format!("`{what}` is not a count")))
        };
        out.insert(
            file.to_string(),
            PublishedScore {
                threshold: number(threshold_at, "Threshold")?,
                score: number(score_at, "Score")?,
                tp: count(tp_at, "TP")?,
                tn: count(tn_at, "TN")?,
                fp: count(fp_at, "FP")?,
                fn_: count(fn_at, "FN")?,
                total: count(total_at, "Total_Count")?,
            },
        );
    }
    Ok(out)
}
