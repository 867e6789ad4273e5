#!/usr/bin/env python3
"""End-to-end benchmark: trailsight beside decompression alone and DuckDB, on one gzipped archive.

On the same generated archive (S3 layout, `trailsight generate`), in one run:
  1. decompression alone: every file inflated, nothing parsed, with zlib (Python's, C zlib) and
     with libdeflate (PyPI `deflate`, the inflater trailsight itself uses; skipped when the module
     is missing); on one core, and on all cores (one process per core);
  2. `trailsight score` from an empty store, with 1 thread and with all threads;
  3. DuckDB (`read_json` with an explicit column list) computing the same per-minute write-call
     counts per API (write management calls, eventIDs deduplicated, Insights events left out);
then prints records/s, input MB/s (gzip and inflated), peak memory, the ratios trailsight /
decompression and trailsight / DuckDB, and checks that trailsight's per-minute counts
(`trailsight counts --store`) equal DuckDB's exactly (exit status 1 when they do not).

Each measurement runs in its own process; peak memory is that process's maximum RSS (wait4).
Every file is read once before each measured run, so that no row pays for cold disk reads
(some hosts drop their page cache within minutes). With
--repeat N each row is measured N times and the fastest run is kept (the usual defence against a
shared, noisy host); the "steal %" column is the share of the machine's CPU time the hypervisor
took for other guests during the kept run (/proc/stat), a measure of that noise.
The release binary is built with `cargo build --release` (CARGO_TARGET_DIR is honoured) unless
--bin is given. Needs the `duckdb` Python package (pip install duckdb==1.5.6 deflate==0.9.0) unless
--skip-duckdb.

    python3 benches/e2e.py --archive /tmp/bench --days 9 --scale 1.1 --seed 1
    python3 benches/e2e.py --archive /tmp/small --days 2 --scale 0.05   # what CI runs

No timing is asserted: the numbers are printed, the counts are checked.
"""

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The columns DuckDB reads: only those the per-minute write-call counts need.
RECORD_COLUMNS = (
    "STRUCT(eventID VARCHAR, eventTime VARCHAR, eventSource VARCHAR, eventName VARCHAR, "
    "awsRegion VARCHAR, recipientAccountId VARCHAR, userIdentity STRUCT(accountId VARCHAR), "
    "readOnly BOOLEAN, managementEvent BOOLEAN, eventCategory VARCHAR, eventType VARCHAR)[]"
)

# trailsight's definitions (spec and src/ingest/parse.rs): a write call is a management event
# (managementEvent, else eventCategory = 'Management'; the generator always says one of them)
# with readOnly = false; the account is recipientAccountId, else userIdentity.accountId; Insights
# events are not input; a record delivered twice (same eventID) counts once.
DUCKDB_QUERY = """
WITH recs AS (
  SELECT unnest(Records) AS r
  FROM read_json({files}, columns={{'Records': '{columns}'}}, compression='gzip',
                 maximum_object_size=1073741824)
), writes AS (
  SELECT r.eventID AS id,
         coalesce(nullif(r.recipientAccountId, ''), r.userIdentity.accountId) AS account,
         r.awsRegion AS region, r.eventSource AS src, r.eventName AS name,
         epoch(date_trunc('minute', CAST(r.eventTime AS TIMESTAMP)))::BIGINT // 60 AS minute
  FROM recs
  WHERE r.readOnly = false
    AND coalesce(r.managementEvent, r.eventCategory = 'Management', true)
    AND coalesce(r.eventType, '') <> 'AwsCloudTrailInsight'
    AND coalesce(r.eventCategory, '') <> 'Insight'
), dedup AS (
  SELECT account, region, src, name, minute FROM writes WHERE id IS NULL
  UNION ALL
  SELECT any_value(account) AS account, any_value(region) AS region, any_value(src) AS src,
         any_value(name) AS name, any_value(minute) AS minute
  FROM writes WHERE id IS NOT NULL GROUP BY id
)
SELECT account, region, src, name, minute, count(*) AS calls, (SELECT count(*) FROM recs) AS records,
       (SELECT max(epoch(date_trunc('minute', CAST(r.eventTime AS TIMESTAMP))))::BIGINT // 60 FROM recs)
         AS newest
FROM dedup GROUP BY ALL
"""


# How long `score` keeps per-minute counts by default (`--retain-days`, DEFAULT_RETAIN_DAYS in
# src/pipeline.rs): hours older than this before the newest minute are pruned.
RETAIN_MINUTES = 35 * 1440


def log(message):
    print(message, file=sys.stderr, flush=True)


def cpu_ticks():
    """(steal, total) clock ticks of the whole machine from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def warm(files):
    """Reads every file once, so that the measurement after it finds them in the page cache."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def measure(cmd, cwd=None):
    """Runs cmd; returns a dict: wall s, user+sys CPU s, peak RSS MB, steal % (None without
    /proc/stat), stdout, stderr and exit status."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    ticks = cpu_ticks()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    after = cpu_ticks()
    steal = None
    if ticks and after and after[1] > ticks[1]:
        steal = 100.0 * (after[0] - ticks[0]) / (after[1] - ticks[1])
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024.0,
        "steal": steal,
        "stdout": out.read().decode("utf-8", "replace"),
        "stderr": err.read().decode("utf-8", "replace"),
        "status": proc.returncode,
    }


def measure_ok(what, cmd, ok=(0,)):
    """measure(cmd), exiting with `what` and the command's stderr when its status is not in `ok`."""
    r = measure(cmd)
    if r["status"] not in ok:
        sys.exit(f"e2e: {what} failed ({r['status']}): {r['stderr']}")
    return r


def best_of(repeat, files, what, cmd, ok=(0,), before=None):
    """measure_ok(what, cmd, ok) `repeat` times, each after `before()` (when given) and after
    warming the page cache; keeps the fastest result."""
    best = None
    for _ in range(max(1, repeat)):
        if before:
            before()
        warm(files)
        r = measure_ok(what, cmd, ok)
        if best is None or r["wall"] < best["wall"]:
            best = r
    return best


def build_binary():
    log("e2e: cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "release", "trailsight")
    if not os.path.isfile(path):
        sys.exit(f"e2e: built, but {path} does not exist")
    return path


def archive_files(archive):
    files = []
    for dirpath, _, names in os.walk(os.path.join(archive, "AWSLogs")):
        files.extend(os.path.join(dirpath, n) for n in names if n.endswith(".json.gz"))
    files.sort()
    return files


def inflate_worker(list_path, procs, backend):
    """Inflates every file in the list (one per line); prints the inflated bytes as JSON."""
    with open(list_path) as f:
        files = [line.rstrip("\n") for line in f if line.strip()]
    inflate = {"zlib": inflate_file, "libdeflate": inflate_file_libdeflate}[backend]
    if procs > 1:
        import multiprocessing

        with multiprocessing.Pool(procs) as pool:
            total = sum(pool.map(inflate, files, chunksize=64))
    else:
        total = sum(map(inflate, files))
    print(json.dumps({"inflated": total}))


def inflate_file(path):
    with open(path, "rb") as f:
        data = f.read()
    total = 0
    # Multi-member gzip, as trailsight reads it.
    while data:
        d = zlib.decompressobj(wbits=31)
        total += len(d.decompress(data))
        total += len(d.flush())
        data = d.unused_data
    return total


def inflate_file_libdeflate(path):
    # libdeflate (PyPI `deflate`), the inflater trailsight uses for whole files; one member per
    # file, as CloudTrail and `trailsight generate` write them.
    import deflate

    with open(path, "rb") as f:
        return len(deflate.gzip_decompress(f.read()))


def duckdb_worker(list_path, threads, out_csv):
    import duckdb

    with open(list_path) as f:
        files = [line.rstrip("\n") for line in f if line.strip()]
    con = duckdb.connect()
    con.execute(f"SET threads TO {threads}")
    listed = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in files) + "]"
    rows = con.execute(DUCKDB_QUERY.format(files=listed, columns=RECORD_COLUMNS)).fetchall()
    records = rows[0][6] if rows else 0
    newest = rows[0][7] if rows else None
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", "region", "eventSource", "eventName", "minute", "calls"])
        for row in rows:
            w.writerow(row[:6])
    print(json.dumps({"records": records, "newest": newest, "duckdb": duckdb.__version__}))


def read_counts(text_or_path, is_path):
    if is_path:
        with open(text_or_path, newline="") as f:
            rows = list(csv.reader(f))
    else:
        rows = list(csv.reader(text_or_path.splitlines()))
    counts = {}
    for row in rows[1:]:
        key = (row[0], row[1], row[2], row[3], int(row[4]))
        counts[key] = counts.get(key, 0) + int(row[5])
    return counts


def compare_counts(name, ours, theirs):
    if ours == theirs:
        log(f"e2e: {name}: per-minute counts equal DuckDB's "
            f"({len(ours)} API-minutes, {sum(ours.values())} write calls)")
        return True
    keys = set(ours) | set(theirs)
    diff = sorted(k for k in keys if ours.get(k) != theirs.get(k))
    log(f"e2e: {name}: per-minute counts DIFFER from DuckDB's on {len(diff)} of {len(keys)} API-minutes")
    for k in diff[:10]:
        log(f"  {k}: trailsight {ours.get(k)} duckdb {theirs.get(k)}")
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", help="archive folder; generated there when it has no AWSLogs/")
    ap.add_argument("--days", type=int, default=9)
    ap.add_argument("--scale", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="all cores (default: this machine's)")
    ap.add_argument("--bin", help="trailsight binary (default: build it with cargo)")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--repeat", type=int, default=1, help="measure each row N times, keep the fastest")
    ap.add_argument("--also-profile", action="append", default=[], metavar="FILE",
                    help="also time `score --profile FILE` in the same run (e.g. models/security.toml: "
                         "every kind of series on), beside the default profile's rows")
    ap.add_argument("--inflate-worker", nargs=3, metavar=("LIST", "PROCS", "BACKEND"), help=argparse.SUPPRESS)
    ap.add_argument("--duckdb-worker", nargs=3, metavar=("LIST", "THREADS", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.inflate_worker:
        inflate_worker(args.inflate_worker[0], int(args.inflate_worker[1]), args.inflate_worker[2])
        return 0
    if args.duckdb_worker:
        duckdb_worker(args.duckdb_worker[0], int(args.duckdb_worker[1]), args.duckdb_worker[2])
        return 0

    binary = args.bin or build_binary()
    work = tempfile.mkdtemp(prefix="trailsight-e2e-")
    try:
        archive = args.archive or os.path.join(work, "archive")
        if not os.path.isdir(os.path.join(archive, "AWSLogs")):
            log(f"e2e: generating --days {args.days} --scale {args.scale} --seed {args.seed} into {archive}")
            subprocess.run([binary, "generate", "--out", archive, "--days", str(args.days),
                            "--scale", str(args.scale), "--seed", str(args.seed)], check=True)
        files = archive_files(archive)
        if not files:
            sys.exit(f"e2e: no .json.gz files under {archive}/AWSLogs")
        gz_bytes = sum(os.path.getsize(p) for p in files)
        list_path = os.path.join(work, "files.txt")
        with open(list_path, "w") as f:
            f.write("\n".join(files) + "\n")
        threads = sorted({1, max(1, args.threads)})
        me = os.path.abspath(__file__)
        rows = []  # (label, threads, result, records)
        ok = True

        inflated = 0
        backends = ["zlib"]
        try:
            import deflate  # noqa: F401

            backends.append("libdeflate")
        except ImportError:
            log("e2e: no `deflate` module (pip install deflate==0.9.0): libdeflate decompression skipped")
        for backend in backends:
            for n in threads:
                log(f"e2e: decompression alone ({backend}), {n} process(es)")
                r = best_of(args.repeat, files, "inflate worker",
                            [sys.executable, me, "--inflate-worker", list_path, str(n), backend])
                got = json.loads(r["stdout"])["inflated"]
                if inflated and got != inflated:
                    sys.exit(f"e2e: {backend} inflated {got} bytes, zlib {inflated}")
                inflated = got
                rows.append((f"decompression alone ({backend})", n, r))

        records = 0
        stores = {}
        for n in threads:
            store = os.path.join(work, f"store-{n}")
            log(f"e2e: trailsight score, {n} thread(s)")
            # Each run starts from an empty store (a second run would find every file ingested).
            r = best_of(args.repeat, files, "trailsight score",
                        [binary, "score", archive, "--store", store, "--quiet", "--no-progress",
                         "--threads", str(n)],
                        ok=(0, 2), before=lambda store=store: shutil.rmtree(store, ignore_errors=True))
            m = re.search(r"records\s+(\d+) read", r["stderr"])
            records = int(m.group(1)) if m else 0
            rows.append(("trailsight score", n, r))
            stores[n] = store
        for profile in args.also_profile:
            name = os.path.splitext(os.path.basename(profile))[0]
            for n in threads:
                store = os.path.join(work, f"store-{name}-{n}")
                log(f"e2e: trailsight score --profile {profile}, {n} thread(s)")
                r = best_of(args.repeat, files, f"trailsight score ({name})",
                            [binary, "score", archive, "--store", store, "--quiet", "--no-progress",
                             "--threads", str(n), "--profile", profile],
                            ok=(0, 2), before=lambda store=store: shutil.rmtree(store, ignore_errors=True))
                rows.append((f"trailsight score ({name} profile)", n, r))

        duck = None
        if not args.skip_duckdb:
            duck_csv = os.path.join(work, "duckdb.csv")
            n = max(threads)
            log(f"e2e: DuckDB read_json, {n} thread(s)")
            r = best_of(args.repeat, files, "DuckDB worker",
                        [sys.executable, me, "--duckdb-worker", list_path, str(n), duck_csv])
            info = json.loads(r["stdout"])
            duck = read_counts(duck_csv, True)
            rows.append((f"DuckDB {info['duckdb']} read_json", n, r))
            if info["records"] != records:
                log(f"e2e: record counts differ: trailsight {records}, DuckDB {info['records']}")
                ok = False
            # The store keeps per-minute counts for the retention period before the newest
            # minute (older hours are pruned once final): the check covers those minutes.
            kept_from = None
            if info["newest"] is not None:
                kept_from = (info["newest"] + 1 - RETAIN_MINUTES) // 60 * 60
                dropped = sum(1 for k in duck if k[4] < kept_from)
                duck = {k: v for k, v in duck.items() if k[4] >= kept_from}
                if dropped:
                    log(f"e2e: {dropped} API-minutes older than the store keeps (--retain-days 35) "
                        "are left out of the check")
            for n, store in stores.items():
                c = subprocess.run([binary, "counts", "--store", store], capture_output=True, text=True, check=True)
                ours = read_counts(c.stdout, False)
                if kept_from is not None:
                    ours = {k: v for k, v in ours.items() if k[4] >= kept_from}
                ok &= compare_counts(f"trailsight ({n} thread{'s' if n > 1 else ''})", ours, duck)

        print_table(rows, records, gz_bytes, inflated, args.markdown, args.repeat)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows, records, gz_bytes, inflated, markdown, repeat):
    mb = 1e6
    print(f"archive: {records:,} records, {gz_bytes / mb:,.0f} MB gzip, {inflated / mb:,.0f} MB inflated "
          f"({inflated / max(records, 1):,.0f} B/record)")
    header = ["run", "threads", "wall s", "CPU s", "records/s", "gzip MB/s", "inflated MB/s", "peak RSS MB",
              "steal %", "vs decompression", "vs DuckDB"]
    # The yardstick is the fastest inflater measured on the same number of cores.
    decomp = {}
    for label, n, r in rows:
        if label.startswith("decompression") and (n not in decomp or r["wall"] < decomp[n]["wall"]):
            decomp[n] = r
    duck = [r for label, _, r in rows if label.startswith("DuckDB")]
    table = []
    for label, n, r in rows:
        rate = records / r["wall"]
        vs_decomp = vs_duck = ""
        if label.startswith("trailsight score"):
            if n in decomp:
                vs_decomp = f"{decomp[n]['wall'] / r['wall']:.2f}"
            if duck:
                vs_duck = f"{duck[0]['wall'] / r['wall']:.1f}x"
        table.append([label, str(n), f"{r['wall']:.2f}", f"{r['cpu']:.2f}", f"{rate:,.0f}",
                      f"{gz_bytes / mb / r['wall']:,.0f}", f"{inflated / mb / r['wall']:,.0f}",
                      f"{r['rss_mb']:,.0f}", "" if r["steal"] is None else f"{r['steal']:.0f}",
                      vs_decomp, vs_duck])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("| --- | " + " | ".join("---:" for _ in header[1:]) + " |")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        for row in table:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    if repeat > 1:
        print(f"each row: the fastest of {repeat} runs, page cache warmed before each.")
    print("vs decompression: the fastest decompression-alone wall time / trailsight wall time, same number of cores "
          "(1.0 = trailsight runs at the speed of inflating alone); vs DuckDB: DuckDB wall / trailsight wall.")


if __name__ == "__main__":
    sys.exit(main())
