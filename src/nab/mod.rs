//! NAB, the Numenta Anomaly Benchmark: reads a NAB corpus ([`corpus`]), scores detections with
//! NAB's own rules and profiles ([`scorer`]), proves the scorer on the published detectors'
//! outputs ([`score_published`]), and runs trailsight's gauge mode on the series ([`evaluate`]).

pub mod corpus;
pub mod scorer;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::detect::gauge::{gauge_profile, GaugeDetector, GaugeSettings};
use crate::detect::Profile;
use corpus::{PublishedScore, Series};
use scorer::{CostMatrix, FileScore, SweepRow, Window};

/// The published detectors scored beside trailsight by default.
pub const PUBLISHED_DETECTORS: [&str; 3] = ["numenta", "windowedGaussian", "skyline"];

/// NAB's three profiles, in the order they are reported.
pub const NAB_PROFILES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// The threshold at which trailsight's anomaly score equals its binary detections.
pub const TRAILSIGHT_THRESHOLD: f64 = 0.5;

/// Errors reading or scoring a NAB corpus.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file or folder.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A CSV line is malformed.
    #[error("{path}, line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A JSON file is malformed or lacks an entry.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A folder holds no series.
    #[error("no series (*.csv) under {path}")]
    Empty {
        /// The folder.
        path: String,
    },
    /// A window starts or ends between rows (NAB requires both edges to be row timestamps).
    #[error("{series}: window {edge} is not the timestamp of any row")]
    WindowOffRows {
        /// The series.
        series: String,
        /// Which edge, and its timestamp.
        edge: String,
    },
    /// A detector's output does not have the series' rows.
    #[error("{series}: {detector}'s output ({got} rows) does not have the series' timestamps ({expected} rows)")]
    RowsDiffer {
        /// The series.
        series: String,
        /// The detector.
        detector: String,
        /// Rows in the output.
        got: usize,
        /// Rows in the series.
        expected: usize,
    },
    /// A profile named in the options is not in `config/profiles.json`.
    #[error("unknown NAB profile {0:?} (config/profiles.json)")]
    UnknownProfile(String),
}

/// How [`evaluate`] runs.
#[derive(Debug, Clone)]
pub struct NabOptions {
    /// Only this category of `data/` (e.g. `realAWSCloudwatch`); `None` for all.
    pub category: Option<String>,
    /// Published detectors to score beside trailsight (skipped when their results are absent).
    pub published: Vec<String>,
    /// trailsight's detector profile (its baseline, windows, budget and episode settings);
    /// by default [`gauge_profile`].
    pub profile: Profile,
    /// The gauge mode's own settings.
    pub gauge: GaugeSettings,
    /// Also report trailsight with its threshold swept per NAB profile on these files (as NAB
    /// tunes the published detectors' thresholds; optimistic, since tuned on the test files).
    pub sweep: bool,
}

impl Default for NabOptions {
    fn default() -> Self {
        NabOptions {
            category: Some("realAWSCloudwatch".to_string()),
            published: PUBLISHED_DETECTORS.iter().map(|s| s.to_string()).collect(),
            profile: gauge_profile(),
            gauge: GaugeSettings::default(),
            sweep: true,
        }
    }
}

/// One file's score under one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileResult {
    /// The series, e.g. `realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv`.
    pub file: String,
    /// Its score and counts.
    #[serde(flatten)]
    pub score: FileScore,
}

/// One detector under one NAB profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileResult {
    /// The NAB profile.
    pub profile: String,
    /// The threshold on the anomaly score (detections are rows at or above it).
    pub threshold: f64,
    /// Per-file results, by file name.
    pub files: Vec<FileResult>,
    /// Sum of the files' raw scores.
    pub raw: f64,
    /// 100 × (raw − S_null) / (S_perfect − S_null) over these files.
    pub normalised: f64,
}

/// One detector's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorResult {
    /// Short name, e.g. `numenta` or `trailsight`.
    pub detector: String,
    /// Where its anomaly scores and threshold come from.
    pub source: String,
    /// One entry per NAB profile.
    pub profiles: Vec<ProfileResult>,
}

/// The score of the null (no detection) and perfect (each window's first row) detectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Normalisation {
    /// Sum over the files of the null detector's raw score.
    pub s_null: f64,
    /// Sum over the files of the perfect detector's raw score.
    pub s_perfect: f64,
}

/// The result of [`evaluate`]: every detector under every NAB profile on the same files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NabReport {
    /// The corpus folder.
    pub corpus: String,
    /// The files scored.
    pub files: Vec<String>,
    /// Labelled windows over those files.
    pub windows: usize,
    /// Per NAB profile: the normalisation's two ends.
    pub normalisation: BTreeMap<String, Normalisation>,
    /// The detectors, published ones first, then trailsight.
    pub detectors: Vec<DetectorResult>,
    /// What the reader noticed and kept (rows out of order), one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One file of the scorer's proof: our score beside the published one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedCheck {
    /// The NAB profile.
    pub profile: String,
    /// The series.
    pub file: String,
    /// The published threshold used.
    pub threshold: f64,
    /// What this scorer computes from the published per-timestep output.
    pub ours: FileScore,
    /// What NAB published for the file.
    pub published: PublishedScore,
}

/// `2014-02-14 14:30:00` for a timestamp in seconds.
pub fn format_timestamp(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

struct Prepared {
    series: Series,
    windows: Vec<Window>,
    /// Sweep rows per profile, in `profiles` order.
    rows: Vec<Vec<SweepRow>>,
}

fn prepare(
    dir: &Path,
    category: Option<&str>,
    profiles: &[(String, CostMatrix)],
) -> Result<Vec<Prepared>, NabError> {
    let all_windows = corpus::read_windows(dir)?;
    let mut out = Vec::new();
    for name in corpus::series_names(dir, category)? {
        let series = corpus::read_series(dir, &name)?;
        let windows = all_windows.get(&name).cloned().unwrap_or_default();
        let rows = profiles
            .iter()
            .map(|(_, cost)| scorer::sweep_rows(&name, &series.timestamps, &windows, cost))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Prepared {
            series,
            windows,
            rows,
        });
    }
    Ok(out)
}

fn nab_profiles(dir: &Path) -> Result<Vec<(String, CostMatrix)>, NabError> {
    let all = corpus::read_profiles(dir)?;
    NAB_PROFILES
        .iter()
        .map(|p| {
            all.get(*p)
                .map(|c| (p.to_string(), *c))
                .ok_or_else(|| NabError::UnknownProfile(p.to_string()))
        })
        .collect()
}

/// A published detector's scores on the files, checked to be on the series' rows.
fn published_scores(dir: &Path, detector: &str, series: &Series) -> Result<Vec<f64>, NabError> {
    let out = corpus::read_published_output(dir, detector, &series.name)?;
    if out.timestamps != series.timestamps {
        return Err(NabError::RowsDiffer {
            series: series.name.clone(),
            detector: detector.to_string(),
            got: out.timestamps.len(),
            expected: series.timestamps.len(),
        });
    }
    Ok(out.anomaly_scores)
}

/// The scorer's proof: scores `detector`'s published per-timestep outputs on every file of
/// `category` at its published threshold per profile, beside NAB's published per-file scores.
pub fn score_published(
    dir: &Path,
    category: &str,
    detector: &str,
) -> Result<Vec<PublishedCheck>, NabError> {
    let profiles = nab_profiles(dir)?;
    let files = prepare(dir, Some(category), &profiles)?;
    let mut checks = Vec::new();
    for (p, (profile, cost)) in profiles.iter().enumerate() {
        let threshold = corpus::read_threshold(dir, detector, profile)?;
        let published = corpus::read_published_scores(dir, detector, profile)?;
        for f in &files {
            let scores = published_scores(dir, detector, &f.series)?;
            let rows = f.rows.get(p).map(Vec::as_slice).unwrap_or(&[]);
            let ours =
                scorer::score_detections(rows, &scorer::detections_at(&scores, threshold), cost);
            let published =
                published
                    .get(&f.series.name)
                    .cloned()
                    .ok_or_else(|| NabError::Json {
                        path: format!("results/{detector}/{detector}_{profile}_scores.csv"),
                        message: format!("no row for {}", f.series.name),
                    })?;
            checks.push(PublishedCheck {
                profile: profile.clone(),
                file: f.series.name.clone(),
                threshold,
                ours,
                published,
            });
        }
    }
    Ok(checks)
}

/// trailsight's gauge mode run online on one series: per-row anomaly scores in [0, 1].
pub fn trailsight_scores(series: &Series, profile: &Profile, gauge: &GaugeSettings) -> Vec<f64> {
    let step = typical_step(&series.timestamps);
    let mut detector = GaugeDetector::new(profile, gauge, step);
    series
        .timestamps
        .iter()
        .zip(&series.values)
        .map(|(&t, &v)| detector.observe(t, v).score)
        .collect()
}

/// The median spacing of the timestamps (NAB's AWS series: 300 s).
pub fn typical_step(timestamps: &[i64]) -> i64 {
    let mut steps: Vec<i64> = timestamps.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_unstable();
    steps.get(steps.len() / 2).copied().unwrap_or(300).max(1)
}

fn profile_result(
    files: &[Prepared],
    scores: &[Vec<f64>],
    p: usize,
    profile: &str,
    cost: &CostMatrix,
    threshold: f64,
    norm: Normalisation,
) -> ProfileResult {
    let mut results = Vec::new();
    let mut raw = 0.0;
    for (f, s) in files.iter().zip(scores) {
        let rows = f.rows.get(p).map(Vec::as_slice).unwrap_or(&[]);
        let score = scorer::score_detections(rows, &scorer::detections_at(s, threshold), cost);
        raw += score.score;
        results.push(FileResult {
            file: f.series.name.clone(),
            score,
        });
    }
    ProfileResult {
        profile: profile.to_string(),
        threshold,
        files: results,
        raw,
        normalised: normalise(raw, norm),
    }
}

fn normalise(raw: f64, n: Normalisation) -> f64 {
    if n.s_perfect == n.s_null {
        return 0.0;
    }
    100.0 * (raw - n.s_null) / (n.s_perfect - n.s_null)
}

/// Scores the published detectors (at their published thresholds) and trailsight's gauge mode
/// (at [`TRAILSIGHT_THRESHOLD`], its binary detections; and swept, if asked) on the corpus in
/// `dir` with NAB's three profiles.
pub fn evaluate(dir: &Path, options: &NabOptions) -> Result<NabReport, NabError> {
    let profiles = nab_profiles(dir)?;
    let files = prepare(dir, options.category.as_deref(), &profiles)?;
    // Normalisation: the null detector flags nothing; the perfect one flags each window's first row.
    let mut normalisation = BTreeMap::new();
    for (p, (profile, cost)) in profiles.iter().enumerate() {
        let mut n = Normalisation {
            s_null: 0.0,
            s_perfect: 0.0,
        };
        for f in &files {
            let rows = f.rows.get(p).map(Vec::as_slice).unwrap_or(&[]);
            let none = vec![false; rows.len()];
            n.s_null += scorer::score_detections(rows, &none, cost).score;
            let perfect: Vec<bool> = f
                .series
                .timestamps
                .iter()
                .map(|t| f.windows.iter().any(|w| w.start == *t))
                .collect();
            n.s_perfect += scorer::score_detections(rows, &perfect, cost).score;
        }
        normalisation.insert(profile.clone(), n);
    }
    let norm_of = |profile: &str| {
        normalisation
            .get(profile)
            .copied()
            .unwrap_or(Normalisation {
                s_null: 0.0,
                s_perfect: 0.0,
            })
    };
    let mut detectors = Vec::new();
    for detector in &options.published {
        let first = files
            .first()
            .map(|f| f.series.name.clone())
            .unwrap_or_default();
        // A detector without results for this corpus is skipped, not an error.
        if corpus::read_published_output(dir, detector, &first).is_err() {
            continue;
        }
        let scores = files
            .iter()
            .map(|f| published_scores(dir, detector, &f.series))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_profile = Vec::new();
        for (p, (profile, cost)) in profiles.iter().enumerate() {
            let threshold = corpus::read_threshold(dir, detector, profile)?;
            per_profile.push(profile_result(
                &files,
                &scores,
                p,
                profile,
                cost,
                threshold,
                norm_of(profile),
            ));
        }
        detectors.push(DetectorResult {
            detector: detector.clone(),
            source: "published per-timestep output, published threshold".to_string(),
            profiles: per_profile,
        });
    }
    let scores: Vec<Vec<f64>> = files
        .iter()
        .map(|f| trailsight_scores(&f.series, &options.profile, &options.gauge))
        .collect();
    let fixed = profiles
        .iter()
        .enumerate()
        .map(|(p, (profile, cost))| {
            profile_result(
                &files,
                &scores,
                p,
                profile,
                cost,
                TRAILSIGHT_THRESHOLD,
                norm_of(profile),
            )
        })
        .collect();
    detectors.push(DetectorResult {
        detector: "trailsight".to_string(),
        source: "gauge mode, online, one profile, fixed threshold 0.5 (its Starts)".to_string(),
        profiles: fixed,
    });
    if options.sweep {
        let mut swept = Vec::new();
        for (p, (profile, cost)) in profiles.iter().enumerate() {
            let inputs: Vec<(&[SweepRow], &[f64])> = files
                .iter()
                .zip(&scores)
                .map(|(f, s)| {
                    (
                        f.rows.get(p).map(Vec::as_slice).unwrap_or(&[]),
                        s.as_slice(),
                    )
                })
                .collect();
            let (threshold, _) = scorer::best_threshold(&inputs, cost);
            swept.push(profile_result(
                &files,
                &scores,
                p,
                profile,
                cost,
                threshold,
                norm_of(profile),
            ));
        }
        detectors.push(DetectorResult {
            detector: "trailsight (swept)".to_string(),
            source: "gauge mode, threshold swept per NAB profile on these files (optimistic)"
                .to_string(),
            profiles: swept,
        });
    }
    Ok(NabReport {
        corpus: dir.display().to_string(),
        files: files.iter().map(|f| f.series.name.clone()).collect(),
        windows: files.iter().map(|f| f.windows.len()).sum(),
        normalisation,
        detectors,
        notes: out_of_order_notes(&files),
    })
}

/// One sentence per series with rows out of order.
fn out_of_order_notes(files: &[Prepared]) -> Vec<String> {
    files
        .iter()
        .filter(|f| !f.series.out_of_order.is_empty())
        .map(|f| {
            let lines: Vec<String> = f
                .series
                .out_of_order
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "{}: the timestamp of line {} is before the previous row's; kept in file order, \
                 as NAB does",
                f.series.name,
                lines.join(", ")
            )
        })
        .collect()
}

fn short_profile(profile: &str) -> &str {
    match profile {
        "standard" => "standard",
        "reward_low_FP_rate" => "low FP",
        "reward_low_FN_rate" => "low FN",
        other => other,
    }
}

impl fmt::Display for NabReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "NAB scores on {} files, {} windows ({})",
            self.files.len(),
            self.windows,
            self.corpus
        )?;
        writeln!(f)?;
        write!(f, "| detector |")?;
        for p in NAB_PROFILES {
            write!(f, " {} |", short_profile(p))?;
        }
        writeln!(f, " windows found (standard) | FP rows (standard) |")?;
        write!(f, "| --- |")?;
        for _ in NAB_PROFILES {
            write!(f, " ---: |")?;
        }
        writeln!(f, " ---: | ---: |")?;
        for d in &self.detectors {
            write!(f, "| {} |", d.detector)?;
            for p in &d.profiles {
                write!(f, " {:.1} |", p.normalised)?;
            }
            let standard = d.profiles.first();
            let found: u64 = standard
                .map(|p| p.files.iter().map(|r| r.score.windows_detected).sum())
                .unwrap_or(0);
            let windows: u64 = standard
                .map(|p| p.files.iter().map(|r| r.score.windows).sum())
                .unwrap_or(0);
            let fp: u64 = standard
                .map(|p| p.files.iter().map(|r| r.score.fp).sum())
                .unwrap_or(0);
            writeln!(f, " {found}/{windows} | {fp} |")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Normalised: 100 × (S − S_null) / (S_perfect − S_null), sums over these files."
        )?;
        for (profile, n) in &self.normalisation {
            writeln!(
                f,
                "  {profile}: S_null = {:.2}, S_perfect = {:.2}",
                n.s_null, n.s_perfect
            )?;
        }
        for note in &self.notes {
            writeln!(f, "Note: {note}")?;
        }
        for (i, profile) in NAB_PROFILES.iter().enumerate() {
            writeln!(f)?;
            writeln!(f, "Raw score per file, {profile} profile:")?;
            writeln!(f)?;
            let detectors = &self.detectors;
            table_row(
                f,
                "file",
                detectors.iter().map(|d| Some(d.detector.to_string())),
            )?;
            table_row(f, "---", detectors.iter().map(|_| Some("---:".to_string())))?;
            for (j, file) in self.files.iter().enumerate() {
                let short = file.rsplit('/').next().unwrap_or(file);
                table_row(
                    f,
                    short,
                    detectors.iter().map(|d| {
                        let r = d.profiles.get(i).and_then(|p| p.files.get(j))?;
                        Some(format!("{:.2}", r.score.score))
                    }),
                )?;
            }
            table_row(
                f,
                "**total (raw)**",
                detectors
                    .iter()
                    .map(|d| d.profiles.get(i).map(|p| format!("{:.2}", p.raw))),
            )?;
            table_row(
                f,
                "threshold",
                detectors
                    .iter()
                    .map(|d| d.profiles.get(i).map(|p| format!("{:.4}", p.threshold))),
            )?;
        }
        Ok(())
    }
}

/// One Markdown table row: the label, then a cell per value (empty where there is none).
fn table_row(
    f: &mut std::fmt::Formatter<'_>,
    label: &str,
    cells: impl IntoIterator<Item = Option<String>>,
) -> std::fmt::Result {
    write!(f, "| {label} |")?;
    for cell in cells {
        match cell {
            Some(v) => write!(f, " {v} |")?,
            None => write!(f, " |")?,
        }
    }
    writeln!(f)
}
