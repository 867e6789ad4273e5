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


def write_day(path, names, day, prefix):
    with open(path, "w") as f:
        for i in range(names):
            m = i % 1440
            f.write(json.dumps({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice",
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
            path = os.path.join(work, "day%d.jsonl" % day)
            write_day(path, args.names, day, "d%d" % day)
            out = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M", args.bin, "score", "--no-progress", "--quiet",
                 "--profile", profile, "--store", store, path],
                capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            seconds, kb = out.stderr.strip().splitlines()[-1].split()
            print("%d names, day %d: %s s, peak %.2f GB, store %.0f MB, %.1f KB peak per series"
                  % (args.names, day - 3, seconds, int(kb) / 1e6, du(store) / 1e6,
                     int(kb) / args.names))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
