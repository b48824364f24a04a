"""The ``emocap`` command: help texts, classify on good and bad inputs (batch goes on, skips are reported)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from emocap.cli import build_parser, main


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("classify", "caption", "train", "eval"):
        assert command in text
    for command in ("classify", "caption", "train", "eval"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: emocap " + command in capsys.readouterr().out


def test_classify_prints_sorted_scores_for_each_image(tiny_model_dir, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.new("L", (48, 48), 90).save(a)
    Image.new("RGB", (60, 40), (200, 10, 10)).save(b)
    code = main(["classify", str(a), str(b), "--model", str(tiny_model_dir), "--labels", "joy", "rage", "calm",
                 "--top-k", "3", "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in lines] == [str(a), str(b)]
    for r in lines:
        scores = [p["score"] for p in r["predictions"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert {p["label"] for p in r["predictions"]} == {"joy", "rage", "calm"}


def test_classify_skips_bad_inputs_and_goes_on(tiny_model_dir, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.new("L", (48, 48), 120).save(good)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["classify", str(good), str(corrupt), str(text), str(tmp_path / "missing.png"), str(empty),
                 "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith(f"{good}: ")
    for name, reason in [("corrupt.png", "corrupt or truncated"), ("notes.jpg", "not an image"),
                         ("missing.png", "file not found"), ("empty", "no image files")]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert "classified 1 images, skipped 4" in err


def test_classify_detect_faces_reports_images_without_faces(tiny_model_dir, astronaut_path, gray_image_path, capsys):
    code = main(["classify", str(astronaut_path), str(gray_image_path), "--detect-faces", "--json",
                 "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    assert code == 0
    result = json.loads(out.splitlines()[0])
    assert result["file"] == str(astronaut_path) and len(result["faces"]) >= 1
    assert len(result["faces"][0]["box"]) == 4
    assert f"skipped {gray_image_path}: no face found" in err


def test_classify_frames_each_image_without_a_flag(tiny_model_dir, astronaut_path, tmp_path, capsys):
    """No flag: a small face crop is scored whole, a photo on its faces; --no-detect scores the photo whole."""
    crop = tmp_path / "crop.png"
    Image.open(astronaut_path).crop((170, 60, 290, 180)).resize((48, 48)).save(crop)
    assert main(["classify", str(crop), str(astronaut_path), "--model", str(tiny_model_dir), "--json"]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["file"] == str(crop) and "predictions" in first  # scored whole, as a face crop
    face = second["faces"][0]
    assert face["framing"] == "detected" and 150 <= face["box"][0] <= 200 and face["face_score"] >= 0.65
    assert main(["classify", str(astronaut_path), "--no-detect", "--model", str(tiny_model_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"{astronaut_path}: ")


def test_classify_bad_model_is_a_clear_error(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(img)
    assert main(["classify", str(img), "--model", str(tmp_path / "no-such-model")]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_console_script_runs_offline(tmp_path):
    env_cmd = [sys.executable, "-m", "emocap.cli", "--version"]
    done = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("emocap ")
    assert build_parser().prog == "emocap"


def test_eval_with_renamed_classes_and_templates_only(tiny_model_dir, ferplus_writer, tmp_path, capsys):
    folder = ferplus_writer()  # FER2013Test with 5 rows, 3 kept by the majority protocol
    names = ["calm", "joy", "shock", "sorrow", "rage", "revulsion", "terror", "scorn"]
    args = ["eval", "--model", str(tiny_model_dir), "--root", str(folder.parent), "--out", str(tmp_path / "r"),
            "--class-names", *names, "--no-descriptions", "--no-progress"]
    assert main(args) == 0
    (result,) = list((tmp_path / "r").glob("*.json"))
    record = json.loads(result.read_text())
    assert record["labels"] == names and record["prompt_set"].endswith("-templates")
    assert record["benchmark_info"]["class_names_renamed_from"][1] == "happiness"
    assert "names-" in result.name and record["n"] == 3
    assert main(args[:7] + ["--class-names", "a", "b", "--no-progress"]) == 2
    assert "needs 8 distinct names" in capsys.readouterr().err


def test_eval_passes_loader_options_and_rejects_unknown_ones(tiny_model_dir, ferplus_writer, tmp_path, capsys):
    folder = ferplus_writer()
    base = ["eval", "--model", str(tiny_model_dir), "--root", str(folder.parent), "--out", str(tmp_path / "r"),
            "--no-progress"]
    assert main(base + ["--option", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(base + ["--option", "novalue"]) == 2


def test_stage_commands_come_from_entry_points_and_a_missing_extra_is_explained(monkeypatch, capsys):
    import ast
    from importlib.metadata import EntryPoint

    import emocap.cli as cli

    names = [ep.name for ep in cli.stage_commands()]
    assert sorted(names) == ["caption", "eval", "train"]
    # core's CLI names no stage module: they are only in pyproject.toml's emocap.commands group
    tree = ast.parse(open(cli.__file__, encoding="utf-8").read())
    texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert not [t for t in texts if t.startswith(("emocap.captioning", "emocap.train", "emocap.eval"))]
    caption = {ep.name: ep for ep in cli.stage_commands()}["caption"]
    assert cli._extra_for(caption) == "captioning"
    broken = EntryPoint(name="caption", value="emocap_not_installed_stage.cli", group=cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "_extra_for", lambda command: "captioning")
    monkeypatch.setattr(cli, "stage_commands", lambda: [broken])
    assert main(["caption"]) == 2
    err = capsys.readouterr().err
    assert "emocap caption: unavailable" in err and "pip install 'emocap[captioning]'" in err


def test_files_after_labels_are_inputs_and_a_template_is_a_prompt_set(tiny_model_dir, tmp_path, capsys):
    """Issue 14: ``--labels joy rage faces/*.png`` read the files as labels; ``--prompts 'a photo of a {} face.'``
    was refused."""
    img = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (200, 120, 90)).save(img)
    rc = main(["classify", "--model", str(tiny_model_dir), "--labels", "joy", "rage", str(img),
               "--prompts", "a photo of a {} face."])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(f"{img}: ")
    assert {p.split()[0] for p in out.split(": ", 1)[1].split(", ")} == {"joy", "rage"}
    assert main(["classify", "--model", str(tiny_model_dir), "--labels", "joy", "rage"]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert main(["classify", "--model", str(tiny_model_dir), str(img), "--prompts", "a {} and {}"]) == 2
    assert "{} once" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has CUDA: nothing to refuse")
def test_a_missing_gpu_is_one_line(tiny_model_dir, tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["classify", str(img), "--model", str(tiny_model_dir), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0]
    assert main(["classify", str(img), "--model", str(tiny_model_dir), "--device", "gpu"]) == 2
    assert "not a device name" in capsys.readouterr().err


def test_every_command_takes_quiet_and_verbose():
    """Issue 14: one -q/--quiet and -v/--verbose for every command (eval's old --no-progress still works)."""
    parser = build_parser()
    for argv in (["classify", "x.png"], ["caption", "--root", "r", "--out", "o"], ["train", "--config", "tiny"],
                 ["eval", "--root", "r"], ["eval", "build", "r"], ["push", "m", "o/r", "--dry-run", "d"]):
        args = parser.parse_args(argv + ["-q", "-vv"])
        assert args.quiet and args.verbose == 2, argv
    assert parser.parse_args(["eval", "--root", "r", "--no-progress"]).quiet


def test_classify_no_word_bridge_changes_only_labels_outside_the_taxonomy(tiny_model_dir, tmp_path, capsys):
    """``--no-word-bridge``: unknown words (``elated``) are scored by the model's own text tower alone, so their
    scores change; taxonomy names (``joy``, ``rage``) score the same either way."""
    img = tmp_path / "a.png"
    Image.new("L", (48, 48), 90).save(img)

    def scores(*labels, bridge=True):
        args = ["classify", str(img), "--model", str(tiny_model_dir), "--labels", *labels, "--json"]
        assert main(args + ([] if bridge else ["--no-word-bridge"])) == 0
        row = json.loads(capsys.readouterr().out.splitlines()[0])
        return {p["label"]: p["score"] for p in row["predictions"]}

    assert scores("joy", "rage") == pytest.approx(scores("joy", "rage", bridge=False), abs=1e-6)
    on, off = scores("joy", "elated", "livid"), scores("joy", "elated", "livid", bridge=False)
    assert on != pytest.approx(off, abs=1e-4)
