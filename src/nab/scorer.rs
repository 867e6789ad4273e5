//! NAB's scoring rules, as numenta/NAB's `nab/sweeper.py` applies them: the probationary rows,
//! the scaled sigmoid of a detection's position in (or after) a window, one true positive per
//! window by its earliest detection, and a threshold sweep over anomaly scores.

use serde::Serialize;

use super::NabError;

/// A profile's weights (NAB's `CostMatrix`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostMatrix {
    /// Weight of a window's true positive.
    pub tp_weight: f64,
    /// Weight of a false positive.
    pub fp_weight: f64,
    /// Cost of a window without detection.
    pub fn_weight: f64,
}

/// A labelled anomaly window: its first and last row's timestamps (seconds, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Timestamp of the window's first row.
    pub start: i64,
    /// Timestamp of the window's last row.
    pub end: i64,
}

/// One file's score at one threshold, with NAB's row counts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FileScore {
    /// The raw score: window rewards and costs plus weighted false positives.
    pub score: f64,
    /// Scored rows inside windows that are detections.
    pub tp: u64,
    /// Scored rows outside windows that are not.
    pub tn: u64,
    /// Scored rows outside windows that are detections.
    pub fp: u64,
    /// Scored rows inside windows that are not.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Rows of the file (probationary ones included, as NAB's `Total_Count`).
    pub total: u64,
    /// Windows with at least one scored row.
    pub windows: u64,
    /// Of those, windows with a detection.
    pub windows_detected: u64,
}

/// NAB's scaled sigmoid: about +0.987 at a window's start (-1), 0 at its end (0), -1 from 3 on.
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0
    }
}

/// NAB's probationary length: the first 15% of the rows, at most 750.
pub fn probationary_rows(rows: usize) -> usize {
    // min(floor(0.15 * n), 0.15 * 5000) with NAB's float arithmetic.
    ((0.15 * rows as f64).floor()).min(750.0) as usize
}

/// A row as the sweep sees it: the score it would add if it were a detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepRow {
    /// Index of the window the row is in, or `None` outside every window.
    pub window: Option<usize>,
    /// Weighted sigmoid score of a detection at this row.
    pub weight: f64,
    /// False for probationary rows, which are never scored.
    pub scored: bool,
}

/// Each row's window and weight (NAB's `calcSweepScore`); windows must start and end on rows.
pub fn sweep_rows(
    name: &str,
    timestamps: &[i64],
    windows: &[Window],
    cost: &CostMatrix,
) -> Result<Vec<SweepRow>, NabError> {
    // The first row with the timestamp (NAB's `list.index`): timestamps may repeat, and a file
    // with a row out of order is searched in file order, as NAB does.
    let sorted = timestamps.windows(2).all(|w| w[0] <= w[1]);
    let row_of = |t: i64, edge: &str| {
        let found = if sorted {
            let i = timestamps.partition_point(|&x| x < t);
            timestamps.get(i).is_some_and(|&x| x == t).then_some(i)
        } else {
            timestamps.iter().position(|&x| x == t)
        };
        match found {
            Some(i) => Ok(i),
            None => Err(NabError::WindowOffRows {
                series: name.to_string(),
                edge: format!("{edge} {}", crate::nab::format_timestamp(t)),
            }),
        }
    };
    let mut bounds = Vec::with_capacity(windows.len());
    for w in windows {
        bounds.push((row_of(w.start, "start")?, row_of(w.end, "end")?));
    }
    let probation = probationary_rows(timestamps.len());
    let max_tp = scaled_sigmoid(-1.0);
    let mut rows = Vec::with_capacity(timestamps.len());
    let mut next = 0usize;
    let mut current: Option<(usize, usize, usize)> = None; // (window, left, right)
    let mut previous: Option<(usize, usize)> = None; // (right, width)
    for i in 0..timestamps.len() {
        if current.is_none() {
            if let Some(&(left, right)) = bounds.get(next) {
                if left == i {
                    current = Some((next, left, right));
                    next += 1;
                }
            }
        }
        let (window, weight) = match current {
            Some((w, left, right)) => {
                let width = (right - left + 1) as f64;
                let position = -((right as f64 - i as f64 + 1.0) / width);
                (Some(w), scaled_sigmoid(position) * cost.tp_weight / max_tp)
            }
            None => {
                let position = match previous {
                    None => 3.0,
                    // A one-row window divides by zero in NAB: +inf, i.e. well past it.
                    Some((right, width)) => (i - right) as f64 / (width as f64 - 1.0),
                };
                (None, scaled_sigmoid(position) * cost.fp_weight)
            }
        };
        rows.push(SweepRow {
            window,
            weight,
            scored: i >= probation,
        });
        if let Some((_, left, right)) = current {
            if i == right {
                previous = Some((right, right - left + 1));
                current = None;
            }
        }
    }
    Ok(rows)
}

/// Scores one file's detections (NAB's `scoreDataSet` at a threshold: detections are the rows
/// whose anomaly score is at least the threshold).
pub fn score_detections(rows: &[SweepRow], detections: &[bool], cost: &CostMatrix) -> FileScore {
    let mut out = FileScore {
        total: rows.len() as u64,
        ..FileScore::default()
    };
    // Per window: the best (earliest) detection's weight, or the FN cost.
    let mut best: std::collections::BTreeMap<usize, f64> = Default::default();
    let mut fp_sum = 0.0;
    for (row, &detected) in rows.iter().zip(detections) {
        if !row.scored {
            continue;
        }
        match row.window {
            Some(w) => {
                let entry = best.entry(w).or_insert(-cost.fn_weight);
                if detected {
                    out.tp += 1;
                    *entry = entry.max(row.weight);
                } else {
                    out.fn_ += 1;
                }
            }
            None => {
                if detected {
                    out.fp += 1;
                    fp_sum += row.weight;
                } else {
                    out.tn += 1;
                }
            }
        }
    }
    out.windows = best.len() as u64;
    out.windows_detected = best.values().filter(|&&s| s > -cost.fn_weight).count() as u64;
    // NAB sums its score parts in this order: the FP part first, then windows by first row.
    out.score = fp_sum + best.values().sum::<f64>();
    out
}

/// Thresholded detections: rows whose anomaly score is at least `threshold`.
pub fn detections_at(anomaly_scores: &[f64], threshold: f64) -> Vec<bool> {
    anomaly_scores.iter().map(|&s| s >= threshold).collect()
}

/// The threshold that maximises the summed score of several files (NAB's sweep, over the
/// distinct anomaly scores), with that score. Ties keep the highest threshold.
pub fn best_threshold(files: &[(&[SweepRow], &[f64])], cost: &CostMatrix) -> (f64, f64) {
    // All scored rows of all files, by anomaly score, highest first.
    let mut points: Vec<(f64, usize, Option<usize>, f64)> = Vec::new();
    let mut total = 0.0;
    for (f, (rows, scores)) in files.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for (row, &s) in rows.iter().zip(scores.iter()) {
            if row.scored {
                points.push((s, f, row.window, row.weight));
                if let Some(w) = row.window {
                    seen.insert(w);
                }
            }
        }
        total -= cost.fn_weight * seen.len() as f64;
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut window_best: std::collections::HashMap<(usize, usize), f64> = Default::default();
    let mut best = (1.1, total);
    let mut i = 0;
    while i < points.len() {
        let threshold = points[i].0;
        while i < points.len() && points[i].0 == threshold {
            let (_, f, w, weight) = points[i];
            match w {
                None => total += weight,
                Some(w) => {
                    let entry = window_best.entry((f, w)).or_insert(-cost.fn_weight);
                    if weight > *entry {
                        total += weight - *entry;
                        *entry = weight;
                    }
                }
            }
            i += 1;
        }
        if total > best.1 {
            best = (threshold, total);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_matches_nab_docstring_values() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probationary_rows(4032), 604);
        assert_eq!(probationary_rows(1243), 186);
        assert_eq!(probationary_rows(20000), 750);
    }

    #[test]
    fn one_window_scored_by_its_earliest_detection() {
        // 100 rows, probation 15; window rows 40..=49 (width 10).
        let ts: Vec<i64> = (0..100).map(|i| i * 300).collect();
        let w = Window {
            start: 40 * 300,
            end: 49 * 300,
        };
        let cost = CostMatrix {
            tp_weight: 1.0,
            fp_weight: 0.11,
            fn_weight: 1.0,
        };
        let rows = sweep_rows("t", &ts, &[w], &cost).unwrap();
        let mut det = vec![false; 100];
        det[42] = true;
        det[45] = true;
        let s = score_detections(&rows, &det, &cost);
        // Earliest detection at row 42: position -(49 - 42 + 1) / 10 = -0.8.
        let expect = (2.0 / (1.0 + (-4.0f64).exp()) - 1.0) / scaled_sigmoid(-1.0);
        assert!((s.score - expect).abs() < 1e-12, "{}", s.score);
        assert_eq!((s.tp, s.fn_, s.fp), (2, 8, 0));
        // An FP before any window costs the full weight; one 9 rows after costs
        // 0.11 * scaled_sigmoid(9 / 9).
        det[20] = true;
        det[58] = true;
        let s2 = score_detections(&rows, &det, &cost);
        let fps = -0.11 + 0.11 * scaled_sigmoid(1.0);
        assert!((s2.score - (expect + fps)).abs() < 1e-12);
        // Probationary rows never count.
        det[3] = true;
        assert_eq!(score_detections(&rows, &det, &cost), s2);
        // No detection at all: the FN cost.
        let none = score_detections(&rows, &[false; 100], &cost);
        assert_eq!(none.score, -1.0);
    }
}
