#!/usr/bin/env python3
"""What per-principal series cost: peak memory and store size of `trailsight score` on one archive
with many principals, with the principals' series off (the default profile) and on (write and read
rates), in the same run; the difference divided by the principal series added is the cost of one.

    python3 benches/principals_memory.py --bin target/release/trailsight \
        [--principals 2000] [--regions 5] [--days 2] [--work DIR]

The archive: PRINCIPALS IAM users (a tenth of them roles with per-run session names), each active
in REGIONS regions of one account, each making a few write calls and a few read calls of a handful
of APIs every hour, on 5 write APIs and 5 read APIs in all (so the API series stay few and the
principals' are what grows). Timings are not the point; peak RSS is read from the kernel
(`ru_maxrss` of the child).
"""

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

WRITES = [("ec2.amazonaws.com", "CreateTags"), ("s3.amazonaws.com", "PutBucketTagging"),
          ("iam.amazonaws.com", "TagRole"), ("lambda.amazonaws.com", "UpdateFunctionCode20150331v2"),
          ("ssm.amazonaws.com", "PutParameter")]
READS = [("ec2.amazonaws.com", "DescribeInstances"), ("s3.amazonaws.com", "ListBuckets"),
         ("iam.amazonaws.com", "GetRole"), ("lambda.amazonaws.com", "ListFunctions20150331"),
         ("ssm.amazonaws.com", "GetParameter")]
ACCOUNT = "111122223333"
REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1",
           "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "sa-east-1", "ca-central-1",
           "eu-north-1", "ap-south-1", "eu-west-3", "ap-northeast-2", "me-south-1", "af-south-1",
           "eu-south-1", "ap-east-1"]


def identity(i, rng):
    if i % 10 == 0:
        session = f"run-{rng.randrange(10**6)}"
        return {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app-{i}/{session}",
                "accountId": ACCOUNT}
    return {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/u-{i}", "accountId": ACCOUNT}


def generate(root, principals, regions, days, seed):
    rng = random.Random(seed)
    start = 1_709_510_400  # 2024-03-04T00:00Z
    records = 0
    for region in REGIONS[:regions]:
        for hour in range(days * 24):
            t0 = start + hour * 3600
            tm = time.gmtime(t0)
            folder = os.path.join(root, "AWSLogs", ACCOUNT, "CloudTrail", region,
                                  f"{tm.tm_year:04d}", f"{tm.tm_mon:02d}", f"{tm.tm_mday:02d}")
            os.makedirs(folder, exist_ok=True)
            batch = []
            for p in range(principals):
                for read_only, apis, n in ((False, WRITES, 2), (True, READS, 3)):
                    for _ in range(n):
                        source, name = apis[rng.randrange(len(apis))]
                        t = t0 + rng.randrange(3600)
                        batch.append({
                            "eventVersion": "1.09", "userIdentity": identity(p, rng),
                            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
                            "eventSource": source, "eventName": name, "awsRegion": region,
                            "sourceIPAddress": "192.0.2.1", "userAgent": "aws-cli/2.15.0",
                            "eventID": str(uuid.UUID(int=rng.getrandbits(128))), "readOnly": read_only,
                            "eventType": "AwsApiCall", "managementEvent": True,
                            "recipientAccountId": ACCOUNT, "eventCategory": "Management"})
            end = time.gmtime(t0 + 3600 + 300)
            stamp = time.strftime("%Y%m%dT%H%MZ", end)
            name = f"{ACCOUNT}_CloudTrail_{region}_{stamp}_{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}.json.gz"
            with gzip.open(os.path.join(folder, name), "wt", compresslevel=1) as f:
                json.dump({"Records": batch}, f)
            records += len(batch)
    return records


def run(binary, archive, store, profile):
    cmd = [binary, "score", archive, "--store", store, "--quiet", "--no-progress"]
    if profile:
        cmd += ["--profile", profile]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t
    if p.returncode not in (0, 2):
        sys.exit(f"principals_memory: {' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        sys.exit("principals_memory: run each profile in a fresh process (ru_maxrss is a maximum)")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs)
    series = subprocess.run([binary, "series", "--store", store, "--from", "2024-03-01", "--to", "2024-04-01"],
                            capture_output=True, text=True, check=True).stdout.count("\n") - 1
    return {"peak_mb": peak / 1024, "store_mb": size / 1e6, "series": series, "wall": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--principals", type=int, default=2000)
    ap.add_argument("--regions", type=int, default=5)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="folder for the archive and stores (default: a temporary one)")
    ap.add_argument("--one", nargs=3, metavar=("ARCHIVE", "STORE", "PROFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.bin, args.one[0], args.one[1], args.one[2] or None)))
        return 0
    work = args.work or tempfile.mkdtemp(prefix="principals-memory-")
    try:
        archive = os.path.join(work, "archive")
        shutil.rmtree(archive, ignore_errors=True)
        records = generate(archive, args.principals, args.regions, args.days, args.seed)
        profile = os.path.join(work, "principals.toml")
        with open(profile, "w") as f:
            f.write(f"[principals]\nwrite_rates = true\nread_rates = true\nmax_series = {4 * args.principals * args.regions}\n")
        results = {}
        for name, prof in (("api series only (default profile)", ""), ("with principals' write and read rates", profile)):
            store = os.path.join(work, "store-" + ("on" if prof else "off"))
            shutil.rmtree(store, ignore_errors=True)
            # One process per profile: ru_maxrss of children is the maximum over all of them.
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--bin", args.bin,
                                  "--one", archive, store, prof], capture_output=True, text=True, check=True)
            results[name] = json.loads(out.stdout)
        print(f"archive: {records:,} records, {args.principals} principals x {args.regions} regions, {args.days} days")
        print("| run | series | peak RSS MB | store MB | wall s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, r in results.items():
            print(f"| {name} | {r['series']:,} | {r['peak_mb']:,.0f} | {r['store_mb']:,.1f} | {r['wall']:.1f} |")
        off, on = results.values()
        added = on["series"] - off["series"]
        if added > 0:
            print(f"per principal series ({added:,} added): {(on['peak_mb'] - off['peak_mb']) * 1024 / added:,.1f} KB "
                  f"peak memory, {(on['store_mb'] - off['store_mb']) * 1e3 / added:,.1f} KB of store")
        return 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
