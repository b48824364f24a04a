"""Start-up of ``emocap classify`` on one photo in fresh processes: the torch runtime vs the ONNX runtime.

Not a test: a measurement to run by hand and paste into docs/speed.md::

    OMP_NUM_THREADS=2 python benchmarks/startup.py ../shared/data/media/single_face.jpg --onnx-dir emocap-default-onnx

Each round runs ``emocap classify PHOTO`` (torch) and ``emocap classify --runtime onnx --model DIR PHOTO`` one after
the other (alternating, so a neighbour's load hits both alike) and times the whole process; the report gives the
median of ``--runs`` rounds with the spread (min-max), whether each process loaded torch/torchvision/open_clip,
and the ``python -X importtime`` top offenders (cumulative import time) of one extra process per runtime.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "open_clip")
# runs the CLI as `emocap classify` does, then reports which heavy libraries the process loaded
PROBE = ("import sys\nfrom emocap.cli import main\ncode = main(sys.argv[1:])\n"
         "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & set(%r)), file=sys.stderr)\n"
         "sys.exit(code)\n" % (HEAVY,))


def commands(photo: str, onnx_dir: str) -> dict:
    return {"torch": ["classify", photo, "-q"], "onnx": ["classify", "--runtime", "onnx", "--model", onnx_dir, photo, "-q"]}


def timed(args: list) -> tuple:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: emocap {' '.join(args)}\n{done.stderr[-2000:]}")
    heavy = re.search(r"HEAVY (\[.*\])", done.stderr).group(1)
    return elapsed, heavy


def import_offenders(args: list, top: int) -> list:
    """The ``top`` imports with the largest cumulative time (seconds), among those not nested in another import
    (top-level packages, and emocap's modules that the command imports inside functions)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE, *args], capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) == 1:
            rows.append((int(m.group(2)) / 1e6, m.group(4)))
    return [(name, round(seconds, 3)) for seconds, name in sorted(rows, reverse=True)[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("--onnx-dir", required=True, help="an export folder (emocap export onnx default --out DIR)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    args = parser.parse_args()
    cmds = commands(args.photo, str(Path(args.onnx_dir)))
    times = {name: [] for name in cmds}
    heavy = {}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            seconds, heavy[name] = timed(cmd)
            times[name].append(seconds)
    report = {name: {"median_s": round(statistics.median(t), 2), "min_s": round(min(t), 2), "max_s": round(max(t), 2),
                     "runs_s": [round(x, 2) for x in t], "loaded": heavy[name],
                     "import_offenders_s": import_offenders(cmds[name], args.top)} for name, t in times.items()}
    for name, row in report.items():
        print(json.dumps({name: row}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
