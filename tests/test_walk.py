"""The producer walker on the hostile corpus and on small trees built for one rule each."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from ocrq.errors import UsageError
from producer.walk import (
    BROKEN_SYMLINK,
    DUPLICATE,
    NOT_REGULAR,
    SYMLINK_LOOP,
    UNREADABLE,
    compile_pattern,
    walk,
)
from tests.corpus import (
    WALK_ABSENT,
    WALK_FILE,
    WALK_SKIPPED,
    can_drop_privileges,
    make_corpus,
    run_unprivileged,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode("utf-8", "surrogateescape"))


def _rels(entries) -> list[str]:
    return [e.rel for e in entries if e.ok]


def test_corpus_walk_outcomes(corpus):
    root, expect = corpus
    entries = list(walk([root], []))
    by_rel = {e.rel: e for e in entries}
    assert len(by_rel) == len(entries), "an entry was yielded twice"
    unexpected = sorted(set(by_rel) - set(expect))
    assert not unexpected, f"walker yielded paths the corpus does not describe: {unexpected}"
    for rel, ex in expect.items():
        entry = by_rel.get(rel)
        if ex.walk == WALK_ABSENT:
            assert entry is None, f"{rel!r} should not be yielded, got {entry}"
        elif ex.walk == WALK_FILE:
            assert entry is not None and entry.ok, f"{rel!r}: expected a usable file, got {entry}"
            assert entry.path == root / rel and entry.path.exists()
            assert entry.size == os.stat(entry.path).st_size
        else:
            assert ex.walk == WALK_SKIPPED
            assert entry is not None and not entry.ok, f"{rel!r}: expected a problem, got {entry}"
            assert ex.walk_reason in entry.reason, (rel, entry.reason)


def test_corpus_problem_kinds(corpus):
    root, _ = corpus
    kinds = {e.rel: e.problem for e in walk([root], []) if not e.ok}
    assert kinds["broken.jpg"] == BROKEN_SYMLINK
    assert kinds["loop.jpg"] == SYMLINK_LOOP
    assert kinds["loopdir/up"] == SYMLINK_LOOP
    assert kinds["pipe.jpg"] == NOT_REGULAR
    assert kinds["zz_link_to_hello.png"] == DUPLICATE


def test_corpus_pattern_filters_problems_too(corpus):
    root, _ = corpus
    entries = list(walk([root], ["*.png"]))
    rels = {e.rel for e in entries}
    assert "broken.jpg" not in rels and "pipe.jpg" not in rels and "zero.jpg" not in rels
    assert "x.jpg/inner.png" in rels  # the directory named x.jpg is walked into
    # directory-level problems are reported whatever the pattern: files may hide inside
    assert any(e.rel == "loopdir/up" and e.problem == SYMLINK_LOOP for e in entries)
    jpgs = _rels(walk([root], ["*.jpg"]))
    assert "x.jpg" not in jpgs and jpgs == sorted(jpgs, key=os.fsencode)
    assert "text_invoice.jpg" in jpgs


def test_walk_is_sorted_and_deterministic(tmp_path):
    _touch(tmp_path, "b.png", "a/z.png", "a/b/c.png", "A.png", "a.png", "ab.png", "a-b.png")
    first = _rels(walk([tmp_path], []))
    assert first == _rels(walk([tmp_path], []))
    # depth first, names in byte order within each directory: the directory "a" sorts
    # before "a-b.png" (a prefix comes first), and its contents follow it at once
    assert first == ["A.png", "a/b/c.png", "a/z.png", "a-b.png", "a.png", "ab.png", "b.png"]


def test_patterns_recursion_and_union(tmp_path):
    _touch(
        tmp_path, "top.jpg", "top.png", "sub/mid.jpg", "sub/mid.png", "sub/deep/low.png", "x.txt"
    )
    assert _rels(walk([tmp_path], ["*.jpg"])) == ["sub/mid.jpg", "top.jpg"]
    assert _rels(walk([tmp_path], ["*.jpg"], recursive=False)) == ["top.jpg"]
    assert _rels(walk([tmp_path], ["**/*.png"])) == ["sub/deep/low.png", "sub/mid.png", "top.png"]
    assert _rels(walk([tmp_path], ["**/*.png"], recursive=False)) == ["top.png"]
    assert _rels(walk([tmp_path], ["sub/*.png"])) == ["sub/mid.png"]
    assert _rels(walk([tmp_path], ["sub/**"])) == [
        "sub/deep/low.png",
        "sub/mid.jpg",
        "sub/mid.png",
    ]
    assert _rels(walk([tmp_path], ["*.jpg", "**/low.png"])) == [
        "sub/deep/low.png",
        "sub/mid.jpg",
        "top.jpg",
    ]
    assert _rels(walk([tmp_path], [])) == [
        "sub/deep/low.png",
        "sub/mid.jpg",
        "sub/mid.png",
        "top.jpg",
        "top.png",
        "x.txt",
    ]


def test_pattern_syntax():
    m = compile_pattern("*.jpg")
    assert m("a.jpg") and m("d/e/a.JPG") and not m("a.jpeg") and not m("a.jpg/x")
    assert not compile_pattern("*.jpg", case_sensitive=True)("A.JPG")
    assert compile_pattern("page?.png")("page1.png") and not compile_pattern("page?.png")(
        "page10.png"
    )
    assert compile_pattern("[ab]*.tif")("b1.tif") and not compile_pattern("[ab]*.tif")("c1.tif")
    assert compile_pattern("[!a]*.tif")("c1.tif") and not compile_pattern("[!a]*.tif")("a1.tif")
    assert compile_pattern("./scans/*.png")("scans/p.png")
    star = compile_pattern("scans/*.png")
    assert not star("scans/x/p.png"), "a single * must not cross '/'"
    deep = compile_pattern("scans/**/*.png")
    assert deep("scans/p.png") and deep("scans/x/y/p.png") and not deep("other/p.png")
    assert compile_pattern("a+b (1).png")("a+b (1).png"), "regex metacharacters are literal"
    with pytest.raises(UsageError):
        compile_pattern("  ")


def test_root_file_missing_and_overlapping(tmp_path):
    _touch(tmp_path, "one.txt", "d/two.png")
    entries = list(walk([tmp_path / "one.txt"], ["*.png"]))
    assert [(e.rel, e.ok) for e in entries] == [("one.txt", True)], "a named file is always taken"
    with pytest.raises(UsageError, match="not found"):
        walk([tmp_path / "nope"], [])
    entries = list(walk([tmp_path, tmp_path / "d"], ["*.png"]))
    assert [e.rel for e in entries if e.ok] == ["d/two.png"]
    assert [e.problem for e in entries if not e.ok] == [DUPLICATE]


def test_symlinked_directories_followed_once(tmp_path):
    _touch(tmp_path, "real/a.png", "real/deep/b.png")
    os.symlink("real", tmp_path / "alias")  # sorts before "real": walked through the link
    os.symlink("..", tmp_path / "real" / "deep" / "up")  # loop back to an ancestor
    os.symlink("../..", tmp_path / "real" / "deep" / "top")  # loop back to the root
    entries = list(walk([tmp_path], []))
    ok = [e.rel for e in entries if e.ok]
    assert ok == ["alias/a.png", "alias/deep/b.png"]
    problems = {e.rel: e.problem for e in entries if not e.ok}
    assert problems == {
        "alias/deep/up": SYMLINK_LOOP,
        "alias/deep/top": SYMLINK_LOOP,
        "real": DUPLICATE,
    }


def test_symlink_to_outside_directory_is_followed(tmp_path):
    outside = tmp_path / "outside"
    _touch(outside, "o.png")
    (tmp_path / "root").mkdir()
    os.symlink(outside, tmp_path / "root" / "ext")
    assert _rels(walk([tmp_path / "root"], [])) == ["ext/o.png"]


def _stack_depth() -> int:
    frame, n = sys._getframe(), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


def test_deep_tree_has_no_recursion_limit(tmp_path):
    # A tree deeper than the frames left under a lowered recursion limit: a recursive walker
    # fails here, ours keeps an explicit stack. (A real 1000+ deep tree costs seconds of
    # rmdir on overlay filesystems, and shutil.rmtree would recurse past the limit anyway.)
    depth = 120
    here = tmp_path
    for _ in range(depth):
        here = here / "d"
        os.mkdir(here)
    (here / "leaf.png").write_bytes(b"x")
    rel = "/".join(["d"] * depth) + "/leaf.png"
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 60)  # room for walk's own few frames, not 120
    try:
        got = _rels(walk([tmp_path], ["*.png"]))
    finally:
        sys.setrecursionlimit(old)
    assert got == [rel]


def test_odd_names(tmp_path):
    raw = os.fsdecode(b"caf\xe9.png")
    names = [raw, "日本語.png", "new\nline.png", "-x.png", "sp ace.png"]
    _touch(tmp_path, *names)
    got = _rels(walk([tmp_path], ["*.png"]))
    assert sorted(got) == sorted(names)
    for rel in got:
        assert (tmp_path / rel).is_file()


def test_broken_symlink_and_fifo_do_not_block_or_crash(tmp_path):
    os.symlink("nowhere.png", tmp_path / "dead.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block: the walker only stats
    entries = {e.rel: e for e in walk([tmp_path], ["*.png"])}
    assert entries["dead.png"].problem == BROKEN_SYMLINK
    assert entries["pipe.png"].problem == NOT_REGULAR


def _walk_report(root: str) -> list[list[str]]:
    return [[e.rel, e.problem or "", e.reason] for e in walk([Path(root)], [])]


@pytest.mark.skipif(not can_drop_privileges(), reason="needs root to fork an unprivileged walker")
def test_unreadable_entries_as_unprivileged_user():
    # chmod 000 binds nobody but root: build the corpus as root in a directory everyone may
    # traverse, then walk it from a forked child that has dropped to uid/gid nobody.
    root = Path(tempfile.mkdtemp(prefix="ocrq-corpus-"))
    try:
        os.chmod(root, 0o755)
        expect = make_corpus(root)
        report = {
            rel: (problem, reason)
            for rel, problem, reason in run_unprivileged(lambda: _walk_report(str(root)))
        }
        assert report["unreadable.png"] == (UNREADABLE, "permission denied")
        assert report["locked"] == (UNREADABLE, "unreadable directory: permission denied")
        assert "locked/inside.png" not in report
        # everything else is unaffected by the two unreadable entries
        for rel, ex in expect.items():
            if rel.startswith(("unreadable", "locked")) or rel == "escape.png":
                continue
            if ex.walk == WALK_FILE:
                assert report[rel] == ("", ""), rel
    finally:
        shutil.rmtree(root)


def test_hidden_entries_skipped_unless_asked(tmp_path):
    _touch(tmp_path, ".hidden.png", ".dir/in.png", "shown.png", "d/.x.png")
    assert _rels(walk([tmp_path], ["*.png"])) == ["shown.png"]
    assert _rels(walk([tmp_path], ["*.png"], include_hidden=True)) == [
        ".dir/in.png",
        ".hidden.png",
        "d/.x.png",
        "shown.png",
    ]
    assert _rels(walk([tmp_path / ".hidden.png"], [])) == [".hidden.png"], "named roots are taken"
