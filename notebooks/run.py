#!/usr/bin/env python3
"""Makes the demo's exports and runs the analyst notebook on them, top to bottom.

On a fresh clone, after `cargo build --release` and `pip install -r notebooks/requirements.txt`:
  1. `trailsight generate` writes the README's demo trail (9 days, seed 7, scale 0.5);
  2. `trailsight score` scores it into a new store;
  3. `trailsight export` writes counts, baselines and insights as Parquet, and the baselines
     again at the detector's 5-, 15- and 60-minute windows (--step);
  4. nbclient executes notebooks/baselines.ipynb on those exports (a time limit per cell), the
     notebook's assertions included; the executed copy and its figures land beside the exports.
Everything is written under WORK (default target/notebook-demo) and EXPORTS (default
target/notebook-exports, where the notebook looks by default), never into the tracked tree.
Exit status 0 when every step and every cell succeeded, 1 otherwise, with the failing step named.

    python3 notebooks/run.py                                   # target/release/trailsight
    python3 notebooks/run.py --bin "$CARGO_TARGET_DIR/release/trailsight"
    python3 notebooks/run.py --exports-only DIR                # only run the notebook on DIR
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
ROOT = NOTEBOOKS.parent
NOTEBOOK = NOTEBOOKS / "baselines.ipynb"
# The README's demo trail: five labelled incidents on its last day.
DEMO = ["--days", "9", "--seed", "7", "--scale", "0.5"]
EXPORTS = ("counts", "baselines", "insights")
# The detector's longer windows (models/default.toml): baselines at these steps show why a
# sustained rise or a fall fired, which the one-minute band cannot.
WINDOW_STEPS = (5, 15, 60)


class StepFailed(Exception):
    """A step failed; the message says which and why."""


def run(step, cmd):
    """Runs one command, echoing it; raises StepFailed with its standard error's end on failure."""
    print(f"run.py: {step}: {' '.join(str(c) for c in cmd)}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    except OSError as err:
        raise StepFailed(f"{step}: cannot run {cmd[0]}: {err}") from err
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise StepFailed(f"{step} failed (exit {done.returncode}):\n{tail}")
    print(f"run.py: {step}: done in {time.monotonic() - started:.1f} s", flush=True)


def make_exports(binary, work, exports):
    """Generates and scores the demo in WORK (both made anew) and exports it into EXPORTS."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise StepFailed(f"no trailsight binary at {binary}: build it with `cargo build --release`, "
                         "or give its path with --bin or TRAILSIGHT_BIN")
    trail, store = work / "trail", work / "store.db"
    for path in (trail, store):
        if path.exists():
            shutil.rmtree(path)
    work.mkdir(parents=True, exist_ok=True)
    exports.mkdir(parents=True, exist_ok=True)
    run("generate", [binary, "generate", "--out", trail, *DEMO])
    run("score", [binary, "score", trail, "--store", store, "--quiet", "--no-progress"])
    jobs = [(what, f"{what}.parquet", []) for what in EXPORTS]
    jobs += [("baselines", f"baselines_step{w}.parquet", ["--step", w]) for w in WINDOW_STEPS]
    for what, name, extra in jobs:
        out = exports / name
        if out.exists():
            out.unlink()
        run(f"export {name}", [binary, "export", "--store", store, "--what", what, *extra, "--out", out])
        if not out.is_file():
            raise StepFailed(f"export {name}: exited 0 but wrote no {out}")
    # The labels let the notebook check that exports and labels name the series alike.
    shutil.copyfile(trail / "labels.json", exports / "labels.json")


def execute_notebook(exports, cell_timeout):
    """Runs the notebook in its own folder with TRAILSIGHT_EXPORTS set; saves the executed copy."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError
        from jupyter_client.kernelspec import NoSuchKernel
    except ImportError as err:
        raise StepFailed(f"notebook: {err}: python3 -m pip install -r notebooks/requirements.txt") from err
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["TRAILSIGHT_EXPORTS"] = str(exports)  # the kernel inherits this environment
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    executed = exports / "baselines.executed.ipynb"
    print(f"run.py: notebook: executing {NOTEBOOK.relative_to(ROOT)} on {exports} "
          f"({cell_timeout} s per cell)", flush=True)
    started = time.monotonic()
    try:
        client.execute()
    except NoSuchKernel as err:
        raise StepFailed(f"notebook: no python3 kernel ({err}): "
                         "python3 -m pip install -r notebooks/requirements.txt") from err
    except CellTimeoutError as err:
        raise StepFailed(f"notebook: a cell ran over {cell_timeout} s: {err}") from err
    except CellExecutionError as err:
        # str(err) holds the failing cell's source and its traceback, coloured for a terminal.
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        raise StepFailed(f"notebook: a cell failed:\n{plain}") from err
    finally:
        nbformat.write(nb, executed)
    print(f"run.py: notebook: done in {time.monotonic() - started:.1f} s; executed copy {executed}",
          flush=True)
    for png in sorted(exports.glob("*.png")):
        print(f"run.py: figure {png}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=None,
                        help="the trailsight binary (default: $TRAILSIGHT_BIN, else target/release/trailsight)")
    parser.add_argument("--work", type=Path, default=ROOT / "target" / "notebook-demo",
                        help="where the demo trail and its store are made (default: target/notebook-demo)")
    parser.add_argument("--exports", type=Path, default=ROOT / "target" / "notebook-exports",
                        help="where the exports and figures go (default: target/notebook-exports)")
    parser.add_argument("--exports-only", type=Path, metavar="DIR", default=None,
                        help="make nothing: run the notebook on the exports already in DIR")
    parser.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args()

    binary = args.bin or Path(os.environ.get("TRAILSIGHT_BIN") or ROOT / "target" / "release" / "trailsight")
    try:
        if args.exports_only is not None:
            exports = args.exports_only.resolve()
        else:
            exports = args.exports.resolve()
            make_exports(binary.resolve(), args.work.resolve(), exports)
        execute_notebook(exports, args.cell_timeout)
    except StepFailed as err:
        print(f"run.py: FAILED: {err}", file=sys.stderr)
        return 1
    print("run.py: the notebook ran top to bottom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
