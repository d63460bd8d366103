"""An SQLite path that cannot hold a database is a ConfigError naming it, never a raw OSError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskgate import App
from taskgate.errors import ConfigError


def _first_use(url: str) -> ConfigError:
    app = App(backend=url)

    @app.task
    def noop() -> None: ...

    with pytest.raises(ConfigError) as info:
        noop()
    return info.value


def test_a_directory_that_cannot_be_created_is_a_config_error() -> None:
    error = _first_use("sqlite:////proc/taskgate-nope/x.db")
    assert "/proc/taskgate-nope/x.db" in str(error)
    assert "cannot create the directory /proc/taskgate-nope" in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)


def test_a_file_in_the_way_of_the_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    error = _first_use(f"sqlite:///{tmp_path}/plain-file/x.db")
    assert f"{tmp_path}/plain-file/x.db" in str(error)
    assert f"{tmp_path}/plain-file exists and is not a directory" in str(error)


def test_a_system_file_in_the_way_is_a_config_error() -> None:
    # The issue's own example: /etc/hostname is a file on every Linux host.
    if not Path("/etc/hostname").is_file():
        pytest.skip("no /etc/hostname file here")
    assert "/etc/hostname exists and is not a directory" in str(
        _first_use("sqlite:////etc/hostname/x.db")
    )


def test_a_directory_where_no_file_can_be_created_is_a_config_error() -> None:
    # /proc refuses new files even to root.
    error = _first_use("sqlite:////proc/taskgate-x.db")
    assert "SQLite database /proc/taskgate-x.db cannot be created" in str(error)
    assert "cannot create files in /proc" in str(error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_directory_is_a_config_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        error = _first_use(f"sqlite:///{locked}/x.db")
        assert f"SQLite database {locked}/x.db cannot be created" in str(error)
        assert "Permission denied" in str(error)
        error = _first_use(f"sqlite:///{locked}/sub/x.db")
        assert f"cannot create the directory {locked}/sub" in str(error)
    finally:
        locked.chmod(0o755)


def test_a_directory_as_the_database_file_is_a_config_error(tmp_path: Path) -> None:
    error = _first_use(f"sqlite:///{tmp_path}")
    assert f"SQLite database {tmp_path} is a directory" in str(error)


def test_a_relative_path_is_named_absolute_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("")
    error = _first_use("sqlite:///taken/x.db")
    assert f"SQLite database {tmp_path}/taken/x.db" in str(error)
