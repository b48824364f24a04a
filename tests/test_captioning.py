"""Caption builder: facts from votes, the template writer, shards, resume after an interruption, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from emocap.captioning import shards as build_mod
from emocap.captioning.shards import build_captions
from emocap.captioning.cli import run as caption_run
from emocap.captioning.facts import facts_from_distribution
from emocap.captioning.sources import ferplus_source, imagefolder_source
from emocap.captioning.templates import CAPTION_WORDS, TemplateWriter
from emocap.cli import build_parser
from emocap.ferplus import FerPlusSplit


def _shard_records(path: Path):
    """{key: {ext: bytes}} of a webdataset tar."""
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def test_facts_from_votes_dominant_secondary_and_prior_aus():
    facts = facts_from_distribution({"happy": 6, "surprised": 3, "neutral": 1})
    assert facts.dominant == "happiness"
    assert facts.secondary == ["surprise"]  # 0.3 >= 0.2; neutral 0.1 is not
    assert facts.agreement == pytest.approx(0.6)
    assert facts.intensity == "moderate" and not facts.ambiguous
    # FACS prior: a smile (AU12) and cheek raiser (AU6) for happiness, brow raisers from the surprise share
    assert {6, 12} <= set(facts.aus) and all(f.source == "prior" for f in facts.aus.values())
    assert 12 in facts.regions["mouth"] and 6 in facts.regions["cheeks"]
    assert facts.sources["aus"] == "prior"


def test_facts_neutral_has_no_aus_and_unknown_label_fails():
    facts = facts_from_distribution({"neutral": 1.0})
    assert facts.aus == {} and facts.regions == {}
    with pytest.raises(KeyError, match="quux"):
        facts_from_distribution({"quux": 1.0})


def test_template_writer_is_seeded_and_varied():
    facts = facts_from_distribution({"anger": 0.9, "disgust": 0.1})
    a = TemplateWriter(seed=0).write(facts, "k1")
    assert a == TemplateWriter(seed=0).write(facts, "k1")  # same seed and key: same captions
    assert set(a) >= {"global", "local", "summary"} and a["local"]
    variants = {TemplateWriter(seed=s).write(facts, "k1")["global"] for s in range(40)}
    assert len(variants) >= 8  # many phrasings of one fact
    summaries = {TemplateWriter(seed=s).write(facts, "k1")["summary"] for s in range(40)}
    assert len(summaries) >= 4


def test_template_words_keep_zero_shot_names_unseen():
    banned = re.compile(r"\b(joy|rage|shock|shocked|fury|furious|terrified)\b", re.I)
    writer = TemplateWriter(seed=3)
    for emotion in CAPTION_WORDS:
        for i in range(30):
            caps = writer.write(facts_from_distribution({emotion: 0.7, "sadness": 0.3}), f"{emotion}{i}")
            text = " ".join([caps["global"], caps["summary"], *caps["local"]])
            assert not banned.search(text), text


def test_caption_real_ferplus_rows(ferplus_dir):
    split = FerPlusSplit(ferplus_dir, "train")
    samples, problems = ferplus_source(str(ferplus_dir), "train")
    assert len(samples) == len(split.records) and not problems
    writer = TemplateWriter(seed=0)
    checked = 0
    for sample in samples[:40]:
        record, reason = build_mod.caption_sample(sample, writer)
        if record is None:
            continue
        data = json.loads(record["json"])
        votes = dict(zip(["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"],
                         sample.votes.values()))
        assert data["label"] == max(votes, key=votes.get)  # dominant emotion = most emotion votes
        assert record["png"] == sample.read_bytes()       # original bytes, not re-encoded
        assert record["txt"].decode() == data["captions"]["global"]
        if not data["facts"]["ambiguous"]:
            nouns, adjs = CAPTION_WORDS[data["label"]]
            assert any(w in data["captions"]["global"] for w in nouns + adjs), data["captions"]["global"]
        checked += 1
    assert checked >= 35


def test_build_shards_sizes_and_skips(ferplus_writer, tmp_path):
    rows = [
        'fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0',
        'fer0000002.png,"(0, 0, 48, 48)",8,2,0,0,0,0,0,0,0,0',
        'fer0000003.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,2,8',   # NF majority: skipped
        'fer0000004.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,6,4,0',
        'fer0000005.png,"(0, 0, 48, 48)",0,0,5,5,0,0,0,0,0,0',   # will be corrupted below
        'fer0000006.png,"(0, 0, 48, 48)",oops,0,5,5,0,0,0,0,0,0',  # malformed row
    ]
    folder = ferplus_writer(rows=rows, split_folder="FER2013Train")
    (folder / "fer0000005.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    samples, problems = ferplus_source(str(folder.parent), "train")
    assert len(problems) == 1 and "label.csv:6" in problems[0][0]
    out = tmp_path / "shards"
    report = build_captions(samples, out, shard_size=2, prefix="t", label_problems=problems, progress=False)
    sizes = json.loads((out / "sizes.json").read_text())
    assert sorted(sizes) == ["t-000000.tar", "t-000001.tar", "t-000002.tar"]
    assert sum(sizes.values()) == report["samples_written"] == 3
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"fer0000003.png", "fer0000005.png"}
    assert "not a face" in reasons["fer0000003.png"] and "unreadable" in reasons["fer0000005.png"]
    for name, count in sizes.items():
        assert len(_shard_records(out / name)) == count


def test_interrupted_build_resumes_to_identical_shards(ferplus_writer, tmp_path, monkeypatch):
    rows = [f'fer{i:07d}.png,"(0, 0, 48, 48)",{i % 5},{10 - i % 5},0,0,0,0,0,0,0,0' for i in range(10)]
    folder = ferplus_writer(rows=rows, split_folder="FER2013Train")
    samples, _ = ferplus_source(str(folder.parent), "train")

    full = tmp_path / "full"
    build_captions(samples, full, shard_size=3, progress=False)

    resumed = tmp_path / "resumed"
    real = build_mod.prepare_sample
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # dies in the middle of the second shard
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "prepare_sample", dying)
    with pytest.raises(KeyboardInterrupt):
        build_captions(samples, resumed, shard_size=3, progress=False)
    assert (resumed / "captions-000000.tar").is_file()      # the complete shard survived
    assert not (resumed / "captions-000001.tar").exists()    # the broken one was never renamed
    monkeypatch.setattr(build_mod, "prepare_sample", real)
    report = build_captions(samples, resumed, shard_size=3, progress=False)
    assert report["resumed_samples"] == 3
    assert not list(resumed.glob("*.tmp"))
    for shard in sorted(full.glob("*.tar")):
        assert hashlib.sha256(shard.read_bytes()).digest() == hashlib.sha256((resumed / shard.name).read_bytes()).digest()
    assert (full / "sizes.json").read_text() == (resumed / "sizes.json").read_text()


def test_imagefolder_source_maps_synonyms_and_reports_unknown(tmp_path):
    for cls in ("happy", "angry", "banana"):
        (tmp_path / cls).mkdir()
        Image.new("L", (32, 32), 128).save(tmp_path / cls / "a.png")
    samples, problems = imagefolder_source(str(tmp_path))
    assert sorted(next(iter(s.distribution)) for s in samples) == ["anger", "happiness"]
    assert len(problems) == 1 and "banana" in problems[0][1]
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        imagefolder_source(str(tmp_path / "happy"))


def test_caption_cli_end_to_end(ferplus_writer, tmp_path, capsys):
    folder = ferplus_writer(split_folder="FER2013Train")
    args = build_parser().parse_args(
        ["caption", "--root", str(folder.parent), "--split", "train", "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert caption_run(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert f"wrote {report['samples_written']} captioned samples" in out
    assert report["samples_written"] + report["samples_skipped"] == 5
    bad = build_parser().parse_args(["caption", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert caption_run(bad) == 2
    assert "nope" in capsys.readouterr().err


def test_caption_record_format_is_written_and_read_by_one_core_module():
    """emocap.caption_records writes the record the builder stores and reads it back the way training, eval's
    webdataset loader and the stats do."""
    import numpy as np

    from emocap.caption_records import (
        image_member, make_record, parse_record, record_captions, record_image, record_soft_label, split_member_name,
    )
    from emocap.train.data import parse_sample

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8), mode="L").save(buf, format="PNG")
    caps = {"global": "a happy face", "local": ["the lip corners rise"], "summary": "happy.", "writer": "templates",
            "fallback_reason": "llm: timeout"}
    sample = make_record(key="k1", image_ext="png", image=buf.getvalue(), source={"path": "a/b.png"},
                         image_size=(8, 8), label="happiness", soft_label={"happiness": 0.75, "neutral": 0.25},
                         captions=caps, facts={"aus": {}}, identity="S1")
    assert sample["txt"] == b"a happy face" and image_member(sample) == "png"
    assert record_image(sample) == ("png", buf.getvalue())
    record = parse_record(sample["json"])
    assert json.dumps(record, ensure_ascii=False, sort_keys=True).encode() == sample["json"]  # sorted: stable bytes
    assert record["writer"] == "templates" and record["writer_fallback"] == "llm: timeout"
    assert record["identity"] == "S1" and "face" not in record
    assert record_captions(record) == {"global": "a happy face", "local": ["the lip corners rise"], "summary": "happy."}
    assert record_soft_label(record) == {"happiness": 0.75, "neutral": 0.25}
    assert record_soft_label({"label": "anger"}) == {"anger": 1.0}
    image, read_caps, soft = parse_sample({**sample, "__key__": "k1"}, "shard.tar", {"happiness": 0, "neutral": 1},
                                          2, 8, True)
    assert image.shape == (1, 8, 8) and read_caps == record_captions(record) and soft.tolist() == [0.75, 0.25]
    with pytest.raises(ValueError, match="shard.tar: k1: unreadable JSON"):
        parse_record(b"{not json", "shard.tar: k1")
    with pytest.raises(ValueError, match="not an object"):
        parse_record(b"[1, 2]")
    assert split_member_name("dir.v1/key.seg.json") == ("dir.v1/key", "seg.json")
    assert split_member_name("noext") == ("", "")


def test_face_analysis_lives_in_core_and_eval_slices_uses_it():
    import emocap.eval.slices as slices
    import emocap.face_analysis as fa

    assert fa.FaceAnalyzer.__module__ == "emocap.face_analysis.analyzer"
    source = Path(slices.__file__).read_text()
    assert "emocap.face_analysis" in source and "emocap.captioning" not in source
