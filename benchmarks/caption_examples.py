"""Caption examples on faces-wild-dev: a fixed sample across classes, captioned the way `emocap caption` does.

Builds template captions (seed 0) with dlib face detection, alignment and AU estimates for ``--per-class`` images
of each class (evenly spaced through labels.csv, so the same images every run), then prints one JSON line per
sample: key, label, global caption, local sentences, summary, the AUs the summary could use. ``--code DIR`` runs
the caption code of another checkout (e.g. a temporary worktree of an older commit, for before/after examples):

    git worktree add /tmp/emocap-before <commit>
    python benchmarks/caption_examples.py --data ../shared/data/faces-wild-dev --code /tmp/emocap-before > before.jsonl
    python benchmarks/caption_examples.py --data ../shared/data/faces-wild-dev > after.jsonl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tarfile
import tempfile
from pathlib import Path

PER_CLASS = {"neutral": 5, "happiness": 5, "surprise": 5, "anger": 5, "sadness": 4, "disgust": 3, "fear": 2,
             "contempt": 1}


def _use_checkout(root: Path) -> None:
    """Import ``emocap`` and ``emocap.captioning`` from ``root`` instead of the installed (editable) package."""
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(root))
    import emocap  # noqa: F401  (from root now)

    spec = importlib.util.spec_from_file_location("emocap.captioning", root / "captioning" / "__init__.py",
                                                  submodule_search_locations=[str(root / "captioning")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["emocap.captioning"] = module
    spec.loader.exec_module(module)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="faces-wild-dev folder (labels.csv + images/)")
    ap.add_argument("--code", help="a checkout whose emocap and captioning code to run")
    args = ap.parse_args(argv)
    if args.code:
        _use_checkout(Path(args.code).resolve())
    import numpy as np

    from emocap.captioning.shards import build_captions
    from emocap.captioning.sources import labelfile_source
    from emocap.face_analysis import FaceAnalyzer

    samples, _ = labelfile_source(args.data, None, labels_file=str(Path(args.data) / "labels.csv"))
    chosen = []
    for label, n in PER_CLASS.items():
        group = [s for s in samples if max(s.distribution, key=s.distribution.get) == label]
        chosen += [group[i] for i in np.linspace(0, len(group) - 1, n).round().astype(int)] if group else []
    with tempfile.TemporaryDirectory() as out:
        build_captions(chosen, out, analyzer=FaceAnalyzer("dlib", detect=True), progress=False)
        for shard in sorted(Path(out).glob("*.tar")):
            with tarfile.open(shard) as tar:
                for m in tar.getmembers():
                    if m.name.endswith(".json"):
                        rec = json.loads(tar.extractfile(m).read())
                        facts = rec["facts"]
                        print(json.dumps({"key": rec["key"], "label": rec["label"], **rec["captions"],
                                          "aus": {k: v["intensity"] for k, v in facts["aus"].items()},
                                          "intensity": facts.get("intensity")}))


if __name__ == "__main__":
    main()
