"""emocap.safe_paths: names that would leave their folder are refused; keys never merge two inputs."""

import os

import pytest

from emocap.safe_paths import UnsafePathError, check_relative, resolve_under, safe_key, unique_keys


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.png", "a/../../b.png", "C:\\x.png", "..\\x.png", "", "a\x00b"])
def test_escaping_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError):
        resolve_under(tmp_path, name, "label-file row")


def test_relative_names_resolve_inside(tmp_path):
    assert resolve_under(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    assert resolve_under(tmp_path, "a/./b.png") == (tmp_path / "a" / "b.png").resolve()
    assert str(check_relative("a\\b.png")) == "a/b.png"


def test_symlink_out_of_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_under(root, "link/x.png")


def test_unique_keys_disambiguate_collisions_only():
    names = ["x.y", "x_y", "plain", "Case", "case"]
    keys = unique_keys(names)
    assert len(set(k.lower() for k in keys)) == len(names)
    assert keys[2] == "plain" == safe_key("plain")
    assert keys[0].startswith("x_y-") and keys[1].startswith("x_y-")
    assert unique_keys(names) == keys  # deterministic
    with pytest.raises(ValueError, match="twice"):
        unique_keys(["a", "a"])
