#!/usr/bin/env python3
"""Memory per series: one day of N records, each of its own eventName (N series), then a
second day of the same names, scored into one store; prints peak RSS (GNU time) and store size.

    python3 benches/many_series.py [--names 100000] [--bin target/release/trailsight]

Issue "Hardening", defect 1: 100,000 names took 17.3 GB and a 3 GB store, the second day was
killed for memory. See docs/bad-input.md, "Many series".
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile


def write_day(folder, names, day, prefix, files):
    """Writes one day of `names` records (one per eventName, spread over the day's minutes)
    as `files` JSON-lines files, cut by event time as CloudTrail's deliveries are."""
    os.makedirs(folder, exist_ok=True)
    per_file = -(-names // files)
    for n in range(files):
        with open(os.path.join(folder, "part%04d.jsonl" % n), "w") as f:
            for i in range(n * per_file, min(names, (n + 1) * per_file)):
                m = i * 1440 // names
                f.write(json.dumps({
                    "eventVersion": "1.08",
                    "userIdentity": {"type": "IAMUser",
                                     "arn": "arn:aws:iam::111122223333:user/alice",
                                     "accountId": "111122223333"},
                    "eventTime": "2024-03-%02dT%02d:%02d:07Z" % (day, m // 60, m % 60),
                    "eventSource": "ec2.amazonaws.com", "eventName": "Api%06d" % i,
                    "awsRegion": "us-east-1", "readOnly": False, "eventType": "AwsApiCall",
                    "managementEvent": True, "eventCategory": "Management",
                    "recipientAccountId": "111122223333", "eventID": "%s-%d" % (prefix, i),
                }) + "\n")


def du(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=288,
                    help="files per day (CloudTrail delivers about every 5 minutes: 288)")
    ap.add_argument("--second-day-names", type=int, default=None,
                    help="names called again on day 2 (default: all); the rest stay idle")
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--bin", default=os.path.join(target, "release", "trailsight"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="many-series-")
    try:
        store = os.path.join(work, "db")
        profile = os.path.join(work, "profile.toml")
        with open(profile, "w") as f:
            f.write("[ingest]\nmax_series = %d\n" % max(args.names, 1))
        for day in (4, 5):
            path = os.path.join(work, "day%d" % day)
            names = args.names
            if day == 5 and args.second_day_names is not None:
                names = min(args.second_day_names, args.names)
            write_day(path, names, day, "d%d" % day, max(1, min(args.files, names)))
            out = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M", args.bin, "score", "--no-progress", "--quiet",
                 "--profile", profile, "--store", store, path],
                capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            seconds, kb = out.stderr.strip().splitlines()[-1].split()
            print("%d names in %d files a day, day %d: %s s, peak %.2f GB, store %.0f MB, %.1f KB peak per series"
                  % (args.names, args.files, day - 3, seconds, int(kb) / 1e6, du(store) / 1e6,
                     int(kb) / args.names))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
