"""Atomic writes: results appear whole, with the modes a plain open() or mkdir() gives."""

import os
import pathlib
import stat

import pytest

from nst_tf import fileio


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path, umask_022):
    path = tmp_path / "out.png"
    fileio.atomic_write_bytes(path, b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_directory_gets_the_umask_mode_not_mkdtemps_0700(tmp_path, umask_022):
    path = tmp_path / "model" / "1"
    with fileio.atomic_directory(path) as tmp:
        pathlib.Path(tmp, "saved_model.pb").touch()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert os.listdir(path) == ["saved_model.pb"]


def test_failed_atomic_directory_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with fileio.atomic_directory(tmp_path / "model" / "1"):
            raise RuntimeError("export failed")
    assert os.listdir(tmp_path / "model") == []
