#!/usr/bin/env python3
"""The scale-out cost model, measured: the Spark job beside `trailsight score` on one archive.

In one run, on the same generated archive (or --archive):
  1. `trailsight score` from an empty store, all cores (records/s, and per core);
  2. the Spark job (scale-out/spark/aggregate.py) in local mode on all cores (records/s, and per
     core; the JVM's start is included, as a cluster job pays it too);
  3. the aggregates' size on disk, scaled to a billion records;
  4. `trailsight score --aggregates` from an empty store: detection time per million
     series-minutes (series x minutes of the archive's span, each of which the detector steps).
Prints the figures and the arithmetic for a 10-billion-record day; --json FILE keeps them.
No timing is asserted anywhere: this is a measurement, run by hand.

    python3 scale-out/measure.py --bin target/release/trailsight --days 9 --scale 0.5 --seed 7
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, **kw):
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"measure.py: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return seconds, p


def count_files(root):
    return sum(1 for _, _, fs in os.walk(os.path.join(root, "AWSLogs")) for f in fs
               if f.endswith(".json.gz"))


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            if not f.startswith((".", "_")):
                total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the trailsight release binary")
    p.add_argument("--archive", help="an existing archive (default: generate one)")
    p.add_argument("--days", type=int, default=9)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        archive = args.archive
        if not archive:
            archive = os.path.join(tmp, "archive")
            timed([args.bin, "generate", "--out", archive, "--days", str(args.days),
                   "--seed", str(args.seed), "--scale", str(args.scale)])
        # Read every file once so that neither side pays cold disk reads.
        for root, _, files in os.walk(archive):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    while fh.read(1 << 20):
                        pass
        small_files_9d = count_files(archive)
        score_s, run = timed([args.bin, "score", archive, "--store", os.path.join(tmp, "a.db"),
                              "--quiet", "--no-progress"])
        records = int(next(line.split()[1] for line in run.stderr.splitlines()
                            if line.strip().startswith("records")))
        agg = os.path.join(tmp, "agg")
        spark_s, _ = timed([sys.executable, os.path.join(HERE, "spark", "aggregate.py"),
                            "--input", archive, "--output", agg])
        sizes = {t: du(os.path.join(agg, t)) for t in ("series_minutes", "attributions", "activity")}
        # The job's cost is a fixed part (JVM start, planning), a part per file (a task's share,
        # opening, gzip set-up) and a part per record. Two one-day archives with the same files
        # (one every 5 minutes per account/region) and 8x the records apart separate them.
        small = {}
        for name, scale in (("small", args.scale), ("dense", args.scale * 8)):
            root = os.path.join(tmp, name)
            timed([args.bin, "generate", "--out", root, "--days", "1", "--seed", str(args.seed),
                   "--scale", str(scale), "--no-incidents"])
            _, run = timed([args.bin, "score", root, "--store", os.path.join(tmp, name + ".db"),
                            "--quiet", "--no-progress"])
            n = int(next(line.split()[1] for line in run.stderr.splitlines()
                         if line.strip().startswith("records")))
            s_, _ = timed([sys.executable, os.path.join(HERE, "spark", "aggregate.py"),
                           "--input", root, "--output", os.path.join(tmp, name + "-agg")])
            small[name] = {"records": n, "files": count_files(root), "seconds": round(s_, 2)}
        detect_s, run = timed([args.bin, "score", "--aggregates", agg, "--store",
                               os.path.join(tmp, "g.db"), "--quiet"])
        series = int(next(line.split()[1] for line in run.stderr.splitlines()
                          if line.strip().startswith("series")))
        import duckdb
        span = duckdb.sql(
            f"SELECT (epoch(max(minute)) - epoch(min(minute))) // 60 + 1, count(*) "
            f"FROM read_parquet('{agg}/series_minutes/*/*.parquet')").fetchone()
        minutes, rows = int(span[0]), int(span[1])
    total_bytes = sum(sizes.values())
    files = None
    b, c = small["small"], small["dense"]
    # t = fixed + files * per_file + records * per_record (seconds of the whole machine).
    per_record = (c["seconds"] - b["seconds"]) / max(c["records"] - b["records"], 1)
    a_files = files if files is not None else small_files_9d
    per_file = ((spark_s - b["seconds"]) - (records - b["records"]) * per_record) / max(
        a_files - b["files"], 1)
    fixed = b["seconds"] - b["files"] * per_file - b["records"] * per_record
    series_minutes = series * minutes
    f = {
        "cores": cores,
        "records": records,
        "score_seconds": round(score_s, 2),
        "score_records_per_s_per_core": round(records / score_s / cores),
        "spark_seconds": round(spark_s, 2),
        "spark_records_per_s_per_core": round(records / spark_s / cores),
        "spark_one_day_archives": small,
        "spark_files": a_files,
        "spark_fixed_seconds": round(fixed, 1),
        "spark_core_ms_per_file": round(per_file * cores * 1000, 2),
        "spark_records_per_s_per_core_marginal": round(1 / max(per_record * cores, 1e-12)),
        "aggregate_bytes": sizes,
        "aggregate_bytes_per_billion_records": round(total_bytes / records * 1e9),
        "series": series,
        "minutes": minutes,
        "series_minute_rows": rows,
        "detect_seconds": round(detect_s, 2),
        "detect_seconds_per_million_series_minutes": round(detect_s / series_minutes * 1e6, 4),
    }
    print(json.dumps(f, indent=2))
    day = 10e9
    # CloudTrail writes a file per account/region about every 5 minutes; a 10-billion-record
    # day of 300 accounts x 17 regions is ~1.5 million files (~6,800 records each).
    day_files = 300 * 17 * 288
    spark_core_hours = (day / f["spark_records_per_s_per_core_marginal"]
                        + day_files * f["spark_core_ms_per_file"] / 1000) / 3600
    score_core_hours = day / f["score_records_per_s_per_core"] / 3600
    print(f"\nA 10-billion-record day:\n"
          f"  Spark counting: {day:.0e} records / {f['spark_records_per_s_per_core_marginal']} "
          f"records/s/core + {day_files:,} files x {f['spark_core_ms_per_file']} core-ms "
          f"= {spark_core_hours:,.0f} core-hours (one hour on {spark_core_hours:,.0f} cores)\n"
          f"  (trailsight score alone: {score_core_hours:,.0f} core-hours)\n"
          f"  aggregates: {f['aggregate_bytes_per_billion_records'] / 1e6 * 10:,.0f} MB per day\n"
          f"  detection of 200,000 series x 1440 minutes = 288 million series-minutes: "
          f"{288 * f['detect_seconds_per_million_series_minutes']:,.0f} s on one process")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(f, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
