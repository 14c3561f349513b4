"""`require 'sqlite'` through a real policy on real database files: the reference page's
example, parameters, values, a lock held by another connection, and errors at the policy's
line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy

EXAMPLE = """
local sqlite = require 'sqlite'
kumo.on('example', function(path)
  local db = sqlite.open(path)
  db:execute 'CREATE TABLE people (name, age)'
  db:execute('INSERT INTO people (name, age) values (?, ?)', 'john', 42)
  db:execute(
    'INSERT INTO people (name, age) values (:name, :age)',
    { name = 'fred', age = 32 }
  )
  local ages = db:execute 'select age from people order by age'
  local all = db:execute 'select * from people order by age'
  local survivors = db:execute 'select * from people where age > 100'
  local deleted = db:execute 'delete from people'
  db:close()
  return kumo.json_encode { ages = ages, all = all, deleted = deleted, none = #survivors }
end)
"""


@pytest.mark.parametrize("where", ["people.db", ":memory:"])
async def test_the_reference_example(load_policy: LoadPolicy, tmp_path: Path, where: str) -> None:
    runtime = load_policy(EXAMPLE)
    fired = await runtime.fire("example", where)
    assert fired.status == "ok", fired.value
    assert json.loads(fired.value) == {
        "ages": [32, 42],
        "all": [{"name": "fred", "age": 32}, {"name": "john", "age": 42}],
        "deleted": 2,
        "none": 0,
    }
    if where != ":memory:":  # a file relative to the policy, written for other readers
        with sqlite3.connect(tmp_path / where) as other:
            assert other.execute("select count(*) from people").fetchone() == (0,)


async def test_values_and_parameters_round_trip(load_policy: LoadPolicy, tmp_path: Path) -> None:
    runtime = load_policy(
        """
        local db = require('sqlite').open 'values.db'
        db:execute 'CREATE TABLE t (i, f, s, b, n)'
        kumo.on('example', function(blob)
          db:execute('INSERT INTO t VALUES (?, ?, ?, ?, ?)', 7, 2.5, 'é', blob, nil)
          db:execute('INSERT INTO t (i, f, s, b) VALUES (?, ?, ?, ?)', { 8, 0.5, 'x', 'y' })
          local rows = db:execute 'SELECT * FROM t ORDER BY i'
          return kumo.json_encode {
            rows[1].i, rows[1].f, rows[1].s, rows[1].b == blob, rows[1].n == nil,
            rows[2].b, db:execute('SELECT s FROM t WHERE i = ?', 8),
          }
        end)
        """
    )
    fired = await runtime.fire("example", b"\x00\xff")
    assert fired.status == "ok", fired.value
    assert json.loads(fired.value) == [7, 2.5, "é", True, True, "y", ["x"]]
    with sqlite3.connect(tmp_path / "values.db") as other:
        assert other.execute("select b from t where i = 7").fetchone() == (b"\x00\xff",)


async def test_a_statement_waiting_for_a_lock_lets_other_handlers_run(
    load_policy: LoadPolicy, tmp_path: Path
) -> None:
    """Another connection holds the database: the statement retries (for up to BUSY_TIMEOUT)
    on a worker thread while another handler runs to its end, and goes through once the
    lock is released; with BUSY_TIMEOUT 0 it fails at once."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    runtime = load_policy(
        f"""
        local sqlite = require 'sqlite'
        kumo.on('write', function(busy)
          sqlite.open('{path}', busy):execute('INSERT INTO t VALUES (1)')
          return 'written'
        end)
        kumo.on('other', function() return 'answered' end)
        """
    )
    holder.execute("BEGIN EXCLUSIVE")
    try:
        impatient = await runtime.fire("write", 0)
        writer = asyncio.ensure_future(runtime.fire("write", 60_000))
        await asyncio.sleep(0.1)
        other = await runtime.fire("other")
        assert (other.status, other.value) == ("ok", "answered")
        assert not writer.done()
    finally:
        holder.execute("ROLLBACK")
    fired = await writer
    assert (fired.status, fired.value) == ("ok", "written")
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)
    holder.close()
    assert impatient.status == "error"
    assert "policy.lua:4: db:execute: database is locked" in str(impatient.value)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("db:execute 'SELEKT 1'", 'db:execute: near "SELEKT": syntax error'),
        ("db:execute('SELECT ?', true)", "db:execute: only numbers, strings and nil can be"),
        ("db:execute('SELECT ?', { { 1 } })", "db:execute: only numbers, strings and nil can"),
        ("db:close() db:execute 'SELECT 1'", "db:execute: the connection was closed"),
        ("db:execute('SELECT ?, ?', 1)", "db:execute: Incorrect number of bindings supplied"),
        ("require('sqlite').open('missing/dir/x.db')", "sqlite.open: "),
    ],
)
def test_errors_name_the_policy_line(load_policy: LoadPolicy, code: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"local db = require('sqlite').open ':memory:'\n{code}\n")
    assert f"/policy.lua:2: {message}" in str(caught.value)
