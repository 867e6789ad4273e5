#!/usr/bin/env python3
"""Continuous-mode benchmark: Insight latency and steady-state cost of `trailsight watch`.

It generates a trail, lands the first days in a folder at once (the history a real deployment
would have scored first), starts `watch` on the folder with its default settings, waits until
it has caught up, then lands the remaining files one by one in delivery order at a fixed rate
(records per second), the way a trail's files arrive. While that runs it samples the process's
CPU time and resident memory; afterwards it reads watch's log, where each Insight names the file
whose reading triggered it, and reports, per Insight, the time from that file landing in the
folder to the Insight being written (durably: after its checkpoint).

    python3 benches/watch_latency.py [--rate 1000] [--days 9] [--seed 1] [--scale 0.5]

No timing is asserted: this prints measurements. Latency includes the settle time a file must
stay unmodified (2 s by default) before it is read.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DELIVERY = re.compile(r"_(\d{8}T\d{4})Z_")


def binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(target, "release", "trailsight")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def proc_sample(pid):
    """(cpu seconds, RSS bytes, peak RSS bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, rss, hwm


def land(src, rel, folder):
    target = os.path.join(folder, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".part")
    shutil.copyfile(src, tmp)
    os.rename(tmp, target)


def wait_for(port, pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = metrics(port)
        if m and pred(m):
            return m
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1000.0, help="records per second to land")
    p.add_argument("--days", type=int, default=9)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--live-hours", type=float, default=24.0,
                   help="hours of the trail's end landed at the rate (the rest is history)")
    p.add_argument("--work", help="working folder (default: a temporary one)")
    args = p.parse_args()

    exe = binary()
    work = args.work or tempfile.mkdtemp(prefix="trailsight-watch-bench-")
    archive = os.path.join(work, "archive")
    if not os.path.exists(os.path.join(archive, "labels.json")):
        subprocess.run([exe, "generate", "--out", archive, "--days", str(args.days),
                        "--seed", str(args.seed), "--scale", str(args.scale)], check=True)
    files = []
    for d, _, names in os.walk(os.path.join(archive, "AWSLogs")):
        for n in names:
            m = DELIVERY.search(n)
            if m:
                path = os.path.join(d, n)
                files.append((m.group(1), os.path.relpath(path, archive), path))
    files.sort()
    with open(os.path.join(archive, "labels.json")) as f:
        labels = json.load(f)
    records_total = labels.get("records") if isinstance(labels, dict) else None
    last = datetime.strptime(files[-1][0], "%Y%m%dT%H%M").timestamp()
    cut = last - args.live_hours * 3600
    history = [f for f in files if datetime.strptime(f[0], "%Y%m%dT%H%M").timestamp() < cut]
    live = files[len(history):]

    folder = os.path.join(work, "trail")
    store = os.path.join(work, "store")
    out = os.path.join(work, "insights.jsonl")
    for path in (folder, store, out):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    for _, rel, src in history:
        land(src, rel, folder)
    port = free_port()
    log_path = os.path.join(work, "watch.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([exe, "watch", folder, "--store", store, "--out", out,
                             "--metrics-addr", f"127.0.0.1:{port}"], stderr=log)
    t0 = time.time()
    m = wait_for(port, lambda m: m.get("trailsight_files_ingested_total") == len(history),
                 3600, "the history to be read")
    catch_up = time.time() - t0
    history_records = m.get("trailsight_records_ingested_total", 0)
    per_file = history_records / max(1, len(history))
    files_per_second = args.rate / per_file
    print(f"history: {len(history)} files, {history_records:.0f} records read in {catch_up:.1f} s "
          f"({history_records / catch_up:,.0f} records/s while catching up)")
    print(f"live: {len(live)} files at {files_per_second:.1f} files/s "
          f"(~{per_file:.0f} records per file, target {args.rate:.0f} records/s)")

    landed = {}
    samples = []
    cpu0, _, _ = proc_sample(proc.pid)
    start = time.time()
    next_sample = start
    for i, (_, rel, src) in enumerate(live):
        land(src, rel, folder)
        landed[os.path.basename(rel)] = time.time()
        now = time.time()
        if now >= next_sample:
            samples.append((now,) + proc_sample(proc.pid))
            next_sample = now + 1.0
        due = start + (i + 1) / files_per_second
        if due > time.time():
            time.sleep(due - time.time())
    paced = time.time() - start
    cpu1, _, _ = proc_sample(proc.pid)
    m = wait_for(port, lambda m: m.get("trailsight_files_ingested_total") == len(files),
                 600, "the live files to be read")
    live_records = m.get("trailsight_records_ingested_total", 0) - history_records
    time.sleep(5)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    log.close()

    latencies = {"Start": [], "End": []}
    stamp = re.compile(r"^(\S+Z)\s+INFO .*Insight state=\"(\w+)\".*trigger=(\S+)")
    for line in open(log_path):
        g = stamp.search(line)
        if not g:
            continue
        written = datetime.fromisoformat(g.group(1).replace("Z", "+00:00")).timestamp()
        trigger = os.path.basename(g.group(3))
        if trigger in landed:
            latencies[g.group(2)].append(written - landed[trigger])
    rss = [s[2] for s in samples]
    print(f"paced phase: {paced:.1f} s, {live_records / paced:,.0f} records/s landed and read")
    print(f"watch CPU: {100 * (cpu1 - cpu0) / paced:.1f} % of one core; "
          f"RSS {statistics.median(rss) / 2**20:.0f} MiB median, {max(rss) / 2**20:.0f} MiB max; "
          f"peak RSS over the run (incl. catch-up) {samples[-1][3] / 2**20:.0f} MiB")
    for state, values in latencies.items():
        if values:
            values.sort()
            print(f"{state} latency (file landed -> Insight written): n={len(values)} "
                  f"min {values[0]:.2f} s, median {statistics.median(values):.2f} s, "
                  f"max {values[-1]:.2f} s")
        else:
            print(f"{state}: none triggered during the paced phase")
    print(f"watch exited with {code}; log in {log_path}")
    if records_total:
        print(f"archive: {records_total} records")


if __name__ == "__main__":
    main()
