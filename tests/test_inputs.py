"""Input roots and size limits: refused paths are never opened (proved with an audit hook)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from ocrq.config import InputLimits, settings_from_env
from ocrq.errors import BadImage, InputRejected
from ocrq.images import load_pages
from ocrq.inputs import check_input_path, display_path, is_under_roots, read_input
from tests.corpus import can_drop_privileges, render_text, run_unprivileged

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    # Audit hooks cannot be removed; this one records only while a test enables it.
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


class _Opens:
    def __enter__(self) -> list[str]:
        global _OPENED
        _OPENED = []
        return _OPENED

    def __exit__(self, *exc: object) -> None:
        global _OPENED
        _OPENED = None


@pytest.fixture()
def tree(tmp_path: Path):
    """root/ (the input root) with a page; outside/ next to it with a secret page."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    render_text("inside", size=20).save(root / "sub" / "page.png")
    render_text("secret", size=20).save(outside / "secret.png")
    return root, outside, InputLimits(input_roots=(str(root),))


def _rejected_without_open(path, limits, match: str) -> None:
    target = os.path.realpath(path)
    with _Opens() as opened:
        with pytest.raises(InputRejected, match=match):
            check_input_path(path, limits)
        with pytest.raises(InputRejected, match=match):
            load_pages(path, limits)
    assert not [p for p in opened if os.path.realpath(p) == target], opened


def test_audit_hook_sees_our_reads(tree):
    root, _, limits = tree
    page = root / "sub" / "page.png"
    with _Opens() as opened:
        assert len(load_pages(page, limits)) == 1
    assert str(page) in opened, "the proof below relies on the hook seeing os.open"


def test_etc_passwd_is_rejected_unread(tree):
    _, _, limits = tree
    _rejected_without_open("/etc/passwd", limits, "outside the configured input roots")


def test_dotdot_escapes_are_rejected(tree, monkeypatch):
    root, outside, limits = tree
    _rejected_without_open(
        str(root / "sub" / ".." / ".." / "outside" / "secret.png"), limits, "outside"
    )
    _rejected_without_open(str(root) + "/../../../../../../etc/passwd", limits, "outside")
    monkeypatch.chdir(root / "sub")  # relative paths resolve against the working directory
    _rejected_without_open("../../outside/secret.png", limits, "outside")
    assert check_input_path("page.png", limits) == (root / "sub" / "page.png").resolve()


def test_symlink_pointing_out_is_rejected(tree):
    root, outside, limits = tree
    os.symlink(outside / "secret.png", root / "innocent.png")
    os.symlink(outside, root / "linkdir")
    _rejected_without_open(root / "innocent.png", limits, "outside")
    _rejected_without_open(root / "linkdir" / "secret.png", limits, "outside")


def test_sibling_with_common_prefix_is_outside(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data-evil").mkdir()
    render_text("x", size=20).save(tmp_path / "data-evil" / "p.png")
    limits = InputLimits(input_roots=(str(tmp_path / "data"),))
    _rejected_without_open(tmp_path / "data-evil" / "p.png", limits, "outside")


def test_symlink_inside_roots_and_symlinked_root(tree, tmp_path):
    root, _, limits = tree
    os.symlink("sub/page.png", root / "alias.png")
    assert check_input_path(root / "alias.png", limits) == (root / "sub" / "page.png").resolve()
    os.symlink(root, tmp_path / "root-link")
    via_link = InputLimits(input_roots=(str(tmp_path / "root-link"),))
    assert check_input_path(root / "sub" / "page.png", via_link).name == "page.png"
    assert check_input_path(tmp_path / "root-link" / "sub" / "page.png", via_link).is_file()


def test_no_roots_accepts_any_readable_file(tree):
    _, outside, _ = tree
    assert (
        check_input_path(outside / "secret.png", InputLimits())
        == (outside / "secret.png").resolve()
    )
    with pytest.raises(BadImage, match="looks like text"):
        load_pages("/etc/passwd", InputLimits())


def test_file_size_limit_is_checked_before_opening(tree):
    root, _, limits = tree
    page = root / "sub" / "page.png"
    size = page.stat().st_size
    assert check_input_path(page, replace(limits, max_file_bytes=size)) == page.resolve()
    _rejected_without_open(page, replace(limits, max_file_bytes=size - 1), f"file is {size} bytes")


def test_malformed_paths(tree):
    _, _, limits = tree
    with pytest.raises(InputRejected, match="empty path"):
        check_input_path("", limits)
    with pytest.raises(InputRejected, match="NUL"):
        check_input_path("/tmp/a\x00b.png", limits)


def test_special_files_rejected_without_blocking(tree):
    root, _, limits = tree
    os.mkfifo(root / "pipe.png")
    with pytest.raises(BadImage, match="FIFO"):
        read_input(root / "pipe.png", limits)
    with pytest.raises(BadImage, match="is a directory"):
        check_input_path(root / "sub", limits)
    with pytest.raises(BadImage, match="not a regular file"):
        check_input_path("/dev/null", InputLimits())


def test_roots_from_environment(tree):
    root, outside, _ = tree
    env = {
        "OCRQ_INPUT_ROOTS": os.pathsep.join([str(root), str(outside)]),
        "OCRQ_MAX_FILE_BYTES": "123",
    }
    limits = settings_from_env(env).limits
    assert limits.max_file_bytes == 123
    assert is_under_roots(str((outside / "secret.png").resolve()), limits.input_roots)
    assert not is_under_roots("/etc/passwd", limits.input_roots)


def test_read_input_and_display_path(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / name).write_bytes(b"\x89PNG-ish")
    assert read_input(tmp_path / name, InputLimits()) == b"\x89PNG-ish"
    assert display_path(tmp_path / name).endswith("caf\\xe9.png")
    assert display_path("日本.png") == "日本.png"


@pytest.mark.skipif(not can_drop_privileges(), reason="needs root to fork an unprivileged loader")
def test_permission_denied_as_unprivileged_user():
    # pytest's temp dirs are 0700; use a private one that nobody may traverse instead.
    base = Path(tempfile.mkdtemp(prefix="ocrq-perm-"))
    try:
        os.chmod(base, 0o755)
        page = base / "secret.png"
        render_text("secret", size=20).save(page)
        os.chmod(page, 0)

        def attempt() -> str:
            try:
                load_pages(page, InputLimits())
            except BadImage as exc:
                return str(exc)
            return "loaded"

        assert run_unprivileged(attempt) == "permission denied"
        assert len(load_pages(page, InputLimits())) == 1, "root still reads it"
    finally:
        shutil.rmtree(base)
