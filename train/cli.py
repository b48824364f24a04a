"""``emocap train``: train or fine-tune an emotion CLIP model from a YAML config (accelerate: CPU or GPUs)."""

from __future__ import annotations

import argparse
import sys

from emocap.cli_options import add_output_options

EXAMPLES = """examples:
  emocap train --config default                                  # the embedded default model's recipe
  emocap train --config my.yaml --set epochs=2 loss.local=0.5    # override any key
  accelerate launch -m emocap.cli train --config my.yaml         # several GPUs / processes
Re-running the same command after an interruption (Ctrl-C, a kill) resumes from the newest whole checkpoint in
<out>/checkpoints/; a rerun with settings other than the run's is refused (choose another --out).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train an emotion CLIP model on caption shards",
        description="Train an open_clip model with EmoCap captions: global/local/summary contrastive terms, "
        "guided positives and class-prompt alignment. Writes <out>/config.yaml, log.csv, checkpoints/, best/ "
        "and final/ (an open_clip hub folder that `emocap classify --model` loads).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML config file, or a bundled config name (default, tiny)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. epochs=2 data.val_limit=500")
    p.add_argument("--out", default=None, help="run folder (overrides the config's 'out')")
    add_output_options(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .config import ConfigError, load_config
    from .data import DataError
    from .loop import CheckpointError, TrainingInterrupted, TrainingStopped, train

    overrides = list(args.set) + ([f"out={args.out}"] if args.out else [])
    try:
        cfg = load_config(args.config, overrides)
        final = train(cfg, progress=not args.quiet)
    except (ConfigError, DataError, TrainingStopped, CheckpointError, FileNotFoundError) as e:
        print(f"emocap train: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # Ctrl-C: a checkpoint was written at the step boundary
        print(f"emocap train: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C twice, or before training began: the last checkpoint stays
        print("emocap train: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    print(f"final model: {final}")
    return 0
