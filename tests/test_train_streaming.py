"""Streaming training data (webdataset): batches, rank splitting, and a streamed training run."""

from __future__ import annotations

import pytest
import torch

from emocap.models import create_model, load_model
from emocap.train.config import ConfigError, load_config
from emocap.train.data import DataError
from emocap.train.loop import train
from emocap.train.streaming import _split_by_rank, stream_batches

from test_train import _tiny_cfg  # tiny_shards: the shared fixture in conftest.py

LABELS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


def test_rank_split_gives_disjoint_shards_and_needs_enough_shards():
    urls = [f"s{i}.tar" for i in range(5)]
    parts = [list(_split_by_rank(r, 2)(urls)) for r in range(2)]
    assert parts == [["s0.tar", "s2.tar", "s4.tar"], ["s1.tar", "s3.tar"]]
    with pytest.raises(DataError, match="resampled"):
        list(_split_by_rank(0, 4)(urls[:2]))


@pytest.mark.parametrize("resampled", [True, False])
def test_streamed_batches(tiny_shards, resampled):
    _, shards = tiny_shards
    tok = create_model("emocap-tiny").tokenizer
    it = stream_batches(shards, tok, LABELS, 32, True, 8, workers=0, resampled=resampled, shuffle_buffer=10)
    batches = [next(it) for _ in range(8)]  # 64 samples from 48: the stream goes on past one pass
    b = batches[0]
    assert b["images"].shape == (8, 1, 32, 32) and b["images"].dtype == torch.uint8
    assert b["global"].shape[0] == 8 and torch.allclose(b["soft_labels"].sum(1), torch.ones(8))
    assert set(torch.cat([x["labels"] for x in batches]).tolist()) <= {0, 1, 2, 3}


def test_streamed_training_run(tiny_shards, tmp_path):
    _, shards = tiny_shards
    final = train(_tiny_cfg(shards, tmp_path / "s", "data.streaming=true", "data.samples_per_epoch=32",
                            "data.workers=1", "prompt.weight=1.0", "prompt.prototype_weight=0.5",
                            "prompt.prototype_samples=16"), progress=False)
    assert load_model(str(final)).meta["training"]["global_step"] == 8  # 2 epochs x 32 / 8
    with pytest.raises(ConfigError, match="data.samples_per_epoch"):
        load_config("tiny", ["data.train_shards=/x", "data.streaming=true"])
    with pytest.raises(ConfigError, match="balance_power"):
        load_config("tiny", ["data.train_shards=/x", "data.streaming=true", "data.samples_per_epoch=8",
                             "data.balance_power=0.5"])
