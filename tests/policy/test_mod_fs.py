"""kumo.fs.* and kumo.glob / uncached_glob / read_dir: real files in a temporary directory,
paths relative to the policy, the reference examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError
from kumoclient.policy.modules import fs
from tests.policy.conftest import LoadPolicy


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a.conf", "b.conf", "c.txt", "sub/d.conf", "sub/deep/e.conf", ".hidden.conf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return tmp_path


def test_reference_example_of_open(load_policy: LoadPolicy, tmp_path: Path) -> None:
    target = tmp_path / "somefile.txt"
    load_policy(
        f"""
        local file = kumo.fs.open('{target}', 'w')
        file:write 'hello there'
        file:seek 'set'
        file:close() -- (not in the example; the test's warnings are errors)
        """
    )
    # 'w' is write only: reading it back needs w+ (the page's example reads a 'w' file)
    load_policy(
        f"""
        local file = kumo.fs.open('{target}', 'w+')
        file:write 'hello there'
        file:seek 'set'
        assert(file:read() == 'hello there')
        assert(file:seek('end') == 11)
        assert(file:seek() == 11)
        file:close()
        """
    )
    assert target.read_text() == "hello there"


def test_files_take_binary_data_and_the_modes_behave(
    load_policy: LoadPolicy, tmp_path: Path
) -> None:
    runtime = load_policy(
        """
        local f = kumo.fs.open('bin.dat', 'wb')
        f:write '\\xff\\x00\\xfe'
        f:close()
        local a = kumo.fs.open('bin.dat', 'a')
        a:write 'z'
        a:close()
        local r = kumo.fs.open('bin.dat')
        HEX = kumo.encode.hex_encode(r:read())
        r:seek('set', 1)
        PART = kumo.encode.hex_encode(r:read(2))
        local created = kumo.fs.open('new.dat', 'r+')
        created:write 'x'
        created:close()
        local ok, err = pcall(function() r:close() r:read() end)
        CLOSED = err
        """
    )
    g = runtime._lua.globals()
    assert (g.HEX, g.PART) == ("ff00fe7a", "00fe")
    assert (tmp_path / "new.dat").read_bytes() == b"x"
    assert "the file is closed" in g.CLOSED


def test_glob_and_read_dir_reference_examples(load_policy: LoadPolicy, tree: Path) -> None:
    runtime = load_policy(
        f"""
        ETC = kumo.json_encode(kumo.fs.glob '{tree}/*.conf')
        OLD = kumo.json_encode(kumo.glob '{tree}/*.conf')
        UNCACHED = kumo.json_encode(kumo.fs.uncached_glob '*.conf')
        REL = kumo.json_encode(kumo.fs.glob('*.conf', 'sub'))
        DEEP = kumo.json_encode(kumo.fs.glob '**/*.conf')
        BRACES = kumo.json_encode(kumo.fs.glob '{{a,c}}.*')
        MISSING = kumo.json_encode(kumo.fs.glob 'nope/*.conf')
        DIR = kumo.json_encode(kumo.fs.read_dir 'sub')
        OLD_DIR = kumo.json_encode(kumo.read_dir 'sub')
        """
    )
    g = runtime._lua.globals()
    assert f'["{tree}/a.conf","{tree}/b.conf"]' == g.ETC
    assert g.OLD == g.ETC
    assert g.UNCACHED == '["a.conf","b.conf"]'
    assert g.REL == '["d.conf"]'
    assert g.DEEP == '["a.conf","b.conf","sub/d.conf","sub/deep/e.conf"]'
    assert g.BRACES == '["a.conf","c.txt"]'
    assert g.MISSING == "{}"  # an empty table: missing directories give no results
    assert f'["{tree}/sub/d.conf","{tree}/sub/deep"]' == g.DIR
    assert g.OLD_DIR == g.DIR


def test_glob_results_are_cached_for_the_ttl(load_policy: LoadPolicy, tree: Path) -> None:
    runtime = load_policy(
        """
        FIRST = #kumo.fs.glob('*.txt', '.', 3600)
        NOCACHE = #kumo.fs.glob('*.txt', '.', 0)
        """
    )
    (tree / "more.txt").write_text("x")
    runtime2 = load_policy(
        """
        CACHED = #kumo.fs.glob('*.txt', '.', 3600)
        FRESH = #kumo.fs.uncached_glob('*.txt')
        """
    )
    assert runtime._lua.globals().FIRST == 1
    assert (runtime2._lua.globals().CACHED, runtime2._lua.globals().FRESH) == (1, 2)


def test_metadata_reference_examples(load_policy: LoadPolicy, tmp_path: Path) -> None:
    (tmp_path / "testfile").write_text("hello world")
    os.symlink(tmp_path / "testfile", tmp_path / "link")
    load_policy(
        """
        local ok, metadata = pcall(kumo.fs.metadata_for_path, 'testfile')
        assert(ok, metadata)
        assert(metadata.is_file and not metadata.is_dir and not metadata.is_symlink)
        assert(metadata.len == 11 and metadata.size == 11 and metadata.path == 'testfile')
        assert(metadata.mtime.unix_timestamp > 0)
        assert(type(metadata.mtime.rfc2822) == 'string')
        local link = kumo.fs.symlink_metadata_for_path 'link'
        assert(link.is_symlink and not link.is_file)
        assert(kumo.fs.metadata_for_path('link').is_file)
        local ok, err = pcall(kumo.fs.metadata_for_path, 'this/path/does/not/exist')
        assert(not ok)
        assert(string.match(tostring(err), 'No such file or directory'))
        """
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "kumo.fs.read_dir('missing')",
            r"kumo\.fs\.read_dir: .*missing: No such file or directory",
        ),
        ("kumo.fs.open('missing.txt')", r"kumo\.fs\.open: .*missing\.txt: No such file"),
        ("kumo.fs.open('x.txt', 'q')", r"kumo\.fs\.open: unknown mode 'q'"),
        ("kumo.glob(42)", r"kumo\.glob: pattern must be a string"),
    ],
)
def test_errors_name_the_function_and_line(
    load_policy: LoadPolicy, code: str, message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"-- line 1\n{code}\n")
    assert "policy.lua:2: " in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a{b,c}d", ["abd", "acd"]),
        ("{x,y{1,2}}", ["x", "y1", "y2"]),
        ("no{brace", ["no{brace"]),
        ("{,a}", ["", "a"]),
    ],
)
def test_brace_expansion(pattern: str, expected: list[str]) -> None:
    assert fs.expand_braces(pattern) == expected
