#!/usr/bin/env python3
"""Two trailsight binaries side by side on one archive: `score` from an empty store with 1 and 2
threads, the binaries alternating run by run (so that a noisy host slows both alike), the
fastest of --repeat runs kept. Also checks that both write the same Insights and stored counts.

    python3 benches/ab.py --before /tmp/ts-old --after target/release/trailsight \\
        --archive /tmp/bench --repeat 5

No timing is asserted: the numbers are printed; a difference in outputs exits with status 1.
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time


def score(binary, archive, store, threads):
    shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run(
        [binary, "score", archive, "--store", store, "--threads", str(threads), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
    ).stdout
    return time.perf_counter() - started, out


def counts(binary, store):
    out = subprocess.run([binary, "counts", "--store", store],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return hashlib.sha256(out).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    bins = {"before": args.before, "after": args.after}
    best, outputs, stored = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        store = f"{tmp}/db"
        for _ in range(args.repeat):
            for threads in (1, 2):
                for name, binary in bins.items():
                    seconds, out = score(binary, args.archive, store, threads)
                    best[name, threads] = min(best.get((name, threads), seconds), seconds)
                    outputs[name, threads] = hashlib.sha256(out).hexdigest()
                    stored[name, threads] = counts(binary, store)
    print(f"fastest of {args.repeat}, seconds")
    print("| threads | before | after | after / before |")
    print("| ---: | ---: | ---: | ---: |")
    for threads in (1, 2):
        b, a = best["before", threads], best["after", threads]
        print(f"| {threads} | {b:.3f} | {a:.3f} | {a / b:.3f} |")
    for name in bins:
        print(f"{name}: 2 threads {best[name, 1] / best[name, 2]:.2f}x one thread")
    same = len(set(outputs.values())) == 1 and len(set(stored.values())) == 1
    print("Insights and stored counts identical across binaries and threads:", same)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
