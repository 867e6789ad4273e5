#!/usr/bin/env python3
"""Detection quality on realistic traffic: generates each seed's realistic archives, scores them
with `trailsight eval --json`, and prints markdown tables per behaviour and per incident kind,
tuning seeds and held-out seeds apart.

For every seed two archives are written under WORK: `clean-<seed>` (`--traffic realistic
--no-incidents`: every Start is judged against the behaviours) and `scen-<seed>` (`--traffic
realistic --scenarios`: the scenario incidents on top of the same background, for recall).
False Insights come from the clean archives only; recall and delay from the scenario archives.

Usage:
  python3 datasets/realistic_suite.py --bin target/release/trailsight --work /tmp/suite \
      [--seeds 1-3,101-110] [--tuning-seeds 1-3] [--days 10] [--scale 0.5] [--profile FILE] \
      [--score] [--json OUT]

Standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def parse_seeds(text):
    """'1-3,7,101-110' -> [1, 2, 3, 7, 101, ..., 110]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            lo, hi = int(lo), int(hi)
            if hi < lo:
                raise ValueError(f"empty range {part}")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    return sorted(set(seeds))


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode not in (0,):
        sys.stderr.write(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}\n")
        sys.exit(1)
    return proc.stdout


def generate(args, seed, kind):
    out = os.path.join(args.work, f"{kind}-{seed}")
    labels = os.path.join(out, "labels.json")
    cmd = [args.bin, "generate", "--out", out, "--days", str(args.days), "--seed", str(seed),
           "--scale", str(args.scale), "--traffic", "realistic"]
    cmd += ["--no-incidents"] if kind == "clean" else ["--scenarios"]
    if os.path.exists(labels):
        # a previous run's archive (perhaps from another build): generated afresh, since files
        # of the old trail that the new one does not rewrite would stay and mix with it
        shutil.rmtree(out)
    elif os.path.exists(out):
        sys.exit(f"{out} exists and holds no labels.json: not a generated archive, left alone")
    run(cmd)
    return out


def calendar_profile(args, archive):
    """With --calendar: the profile a team would write for this trail, its office time zone
    and its holidays (from the archive's labels), on top of --profile."""
    with open(os.path.join(archive, "labels.json")) as f:
        labels = json.load(f)
    tz = labels.get("generator", {}).get("timezone", "UTC")
    days = sorted({b["description"].split(" ", 1)[0] for b in labels.get("behaviours", [])
                   if b.get("kind") == "holiday"} | set(labels.get("generator", {}).get("holidays", [])))
    base = ""
    if args.profile:
        with open(args.profile) as f:
            base = f.read()
    if "[baseline]" in base:
        raise SystemExit("--calendar cannot be combined with a --profile that has a [baseline] section")
    path = archive + ".calendar.toml"
    with open(path, "w") as f:
        f.write(base + "\n[baseline]\ntimezone = %s\nholidays = [%s]\n"
                % (json.dumps(tz), ", ".join(json.dumps(d) for d in days)))
    return path


def evaluate(args, archive):
    cmd = [args.bin, "eval", archive, "--json"]
    profile = calendar_profile(args, archive) if args.calendar else args.profile
    if profile:
        cmd += ["--profile", profile]
    t = time.monotonic()
    report = json.loads(run(cmd))
    report["_seconds"] = time.monotonic() - t
    if args.score:
        store = archive + ".db"
        subprocess.run(["rm", "-rf", store])
        cmd = [args.bin, "score", archive, "--store", store, "--out", archive + ".insights", "--no-progress"]
        if profile:
            cmd += ["--profile", profile]
        t = time.monotonic()
        run(cmd)
        report["_score_seconds"] = time.monotonic() - t
        subprocess.run(["rm", "-rf", store, archive + ".insights"])
    return report


def aggregate(clean, scen):
    """Sums the per-seed reports of one seed group."""
    kinds = {}
    order = []
    unexplained = 0
    false_total = 0
    series_days = 0.0
    accounts = {}
    for r in clean:
        series_days += r["seriesDays"]
        false_total += len(r["falseInsights"])
        b = r.get("behaviours") or {}
        unexplained += b.get("unexplained", 0)
        for k in b.get("kinds", []):
            if k["kind"] not in kinds:
                order.append(k["kind"])
                kinds[k["kind"]] = {"class": k["class"], "behaviours": 0, "series_days": 0.0,
                                    "false": 0, "allowed": 0}
            a = kinds[k["kind"]]
            a["behaviours"] += k["behaviours"]
            a["series_days"] += k["seriesDays"]
            a["false"] += k["falseInsights"]
            a["allowed"] += k["allowedInsights"]
        for acc in b.get("accounts", []):
            accounts[acc["account"]] = accounts.get(acc["account"], 0) + acc["falseInsights"]
    incidents = {}
    iorder = []
    for r in scen:
        for o in r["labels"]:
            if o["kind"] not in incidents:
                iorder.append(o["kind"])
                incidents[o["kind"]] = {"expect": o["expect"], "labels": 0, "found": 0, "delays": []}
            a = incidents[o["kind"]]
            a["labels"] += 1
            a["found"] += 1 if o["found"] else 0
            if o.get("delayMinutes") is not None:
                a["delays"].append(o["delayMinutes"])
    return {"kinds": [(k, kinds[k]) for k in order], "unexplained": unexplained,
            "false_total": false_total, "series_days": series_days, "accounts": accounts,
            "incidents": [(k, incidents[k]) for k in iorder]}


def per_1000(n, days):
    return f"{n * 1000.0 / days:.2f}" if days > 0 else "-"


def table(title, seeds, agg, days):
    lines = [f"### {title}: seeds {seeds_text(seeds)} ({len(seeds)} × {days} days)", ""]
    lines.append("| behaviour | class | behaviours | series-days | false | allowed | false / 1,000 series-days | episodes per allowed change |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, a in agg["kinds"]:
        episodes = "-"
        if a["class"] == "allowed_change" and a["behaviours"]:
            episodes = f"{(a['false'] + a['allowed']) / a['behaviours']:.2f}"
        lines.append(f"| {kind} | {a['class']} | {a['behaviours']} | {a['series_days']:.0f} | "
                     f"{a['false']} | {a['allowed']} | {per_1000(a['false'], a['series_days'])} | {episodes} |")
    lines.append(f"| unexplained | - | - | {agg['series_days']:.0f} | {agg['unexplained']} | - | "
                 f"{per_1000(agg['unexplained'], agg['series_days'])} | - |")
    lines.append(f"| **all false Insights** | - | - | {agg['series_days']:.0f} | {agg['false_total']} | - | "
                 f"{per_1000(agg['false_total'], agg['series_days'])} | - |")
    lines.append("")
    accounts = ", ".join(f"{a}: {n}" for a, n in sorted(agg["accounts"].items()))
    lines.append(f"False Insights per account (all seeds of the group): {accounts or 'none'}")
    lines.append("")
    lines.append("| incident kind | expect | labels | found | recall | median delay (min) |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for kind, a in agg["incidents"]:
        recall = f"{a['found'] / a['labels']:.2f}" if a["labels"] else "-"
        delay = f"{statistics.median(a['delays']):g}" if a["delays"] else "-"
        lines.append(f"| {kind} | {a['expect']} | {a['labels']} | {a['found']} | {recall} | {delay} |")
    lines.append("")
    return "\n".join(lines)


def seeds_text(seeds):
    if not seeds:
        return "none"
    parts = []
    lo = prev = seeds[0]
    for s in seeds[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(f"{lo}-{prev}" if prev != lo else f"{lo}")
        if s is not None:
            lo = prev = s
    return ",".join(parts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the trailsight binary")
    p.add_argument("--work", required=True, help="folder for the archives (regenerated on every run)")
    p.add_argument("--seeds", default="1-3,101-110", help="seeds to run, e.g. 1-3,101-110")
    p.add_argument("--tuning-seeds", default="1-3",
                   help="which of the seeds are tuning seeds; the others are held out")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--profile", help="detector profile (TOML) for eval")
    p.add_argument("--calendar", action="store_true",
                   help="configure each archive's office time zone and holidays (from its labels) "
                        "in the profile, as the team running it would")
    p.add_argument("--score", action="store_true",
                   help="also time a plain `score` of each archive into a scratch store")
    p.add_argument("--json", help="write the per-seed reports and the aggregates to this file")
    args = p.parse_args()
    if args.days < 9:
        p.error("--days must be at least 9 (the scenario suite needs 9 days from a Monday)")
    seeds = parse_seeds(args.seeds)
    tuning = set(parse_seeds(args.tuning_seeds))
    os.makedirs(args.work, exist_ok=True)
    reports = {}
    for seed in seeds:
        for kind in ("clean", "scen"):
            archive = generate(args, seed, kind)
            reports[(seed, kind)] = evaluate(args, archive)
            r = reports[(seed, kind)]
            sys.stderr.write(f"seed {seed} {kind}: {r['starts']} Starts, {len(r['falseInsights'])} false, "
                             f"eval {r['_seconds']:.1f} s\n")
    groups = [("Tuning seeds", [s for s in seeds if s in tuning]),
              ("Held-out seeds", [s for s in seeds if s not in tuning])]
    out = []
    aggregates = {}
    for title, group in groups:
        if not group:
            continue
        agg = aggregate([reports[(s, "clean")] for s in group], [reports[(s, "scen")] for s in group])
        aggregates[title] = agg
        out.append(table(title, group, agg, args.days))
    print("\n".join(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args),
                       "reports": {f"{s}-{k}": r for (s, k), r in reports.items()},
                       "aggregates": aggregates}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
