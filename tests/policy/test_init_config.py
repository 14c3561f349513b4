"""What `init` configures with KumoMTA's keys (issue 16 item 6): every documented key of
`define_spool` and `start_http_listener` checked and kept, `configure_accounting_db_path`,
`set_httpinject_recipient_rate_limit` (a throttle spec or nil). The reference pages' examples
run and give the documented result."""

from __future__ import annotations

import pytest

from kumoclient.configs import MinFree, Rate
from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy

ROCKS_EXAMPLES = [
    "increase_parallelism = kumo.available_parallelism()",
    "optimize_level_style_compaction = 64 * 1024 * 1024",
    "optimize_universal_style_compaction = 64 * 1024 * 1024",
    "limit_concurrent_stores = kumo.available_parallelism() * 2",
    "limit_concurrent_loads = kumo.available_parallelism() * 2",
    "limit_concurrent_removes = kumo.available_parallelism() * 2",
    "paranoid_checks = true, compression_type = 'None', log_level = 'Warn'",
    "compaction_readahead_size = 2097152, level_compaction_dynamic_level_bytes = true",
    "max_open_files = 1024, write_buffer_size = 1048576, level0_stop_writes_trigger = 36",
    "memtable_huge_page_size = 2097152, log_file_time_to_roll = '24 hours'",
    "obsolete_files_period = '6 hours', store_deadline = '30s'",
    "error_latch_duration = '15s', error_unlatch_duration = '5m', allow_error_unlatch = false",
]


async def test_the_define_spool_example_defines_data_and_meta(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.define_spool {
            name = 'data',
            path = '/var/spool/kumo/data',
          }
          kumo.define_spool {
            name = 'meta',
            path = '/var/spool/kumo/meta',
          }
        end)
        """
    )
    init = await runtime.start()
    assert [(s.name, s.path, s.kind) for s in init.spools] == [
        ("data", "/var/spool/kumo/data", "LocalDisk"),
        ("meta", "/var/spool/kumo/meta", "LocalDisk"),
    ]
    # KumoMTA's defaults: no flush, 10% of space and inodes kept free
    assert all(not s.flush for s in init.spools)
    assert {s.min_free_space for s in init.spools} == {MinFree(percent=10)}
    assert {s.min_free_inodes for s in init.spools} == {MinFree(percent=10)}


@pytest.mark.parametrize("params", ROCKS_EXAMPLES)
async def test_each_rocks_params_example_is_accepted_and_kept(
    load_policy: LoadPolicy, params: str
) -> None:
    runtime = load_policy(
        f"""
        kumo.on('init', function()
          local params = {{ {params} }}
          kumo.define_spool {{ name = 'data', path = '/var/spool/kumo/data', kind = 'RocksDB',
                              rocks_params = params }}
        end)
        """
    )
    [spool] = (await runtime.start()).spools
    assert spool.kind == "RocksDB"
    given = {key.strip() for key in params.split(",") if "=" in key}
    assert len(spool.rocks_params) == len(given)


async def test_every_other_key_of_define_spool(load_policy: LoadPolicy) -> None:
    """flush, min_free_space, min_free_inodes (a percentage, or an amount as a number or a
    string of digits); any name (KumoMTA uses only data and meta)."""
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.define_spool { name = 'data', path = 'd', flush = true,
                              min_free_space = 1073741824, min_free_inodes = '5%' }
          kumo.define_spool { name = 'archive', path = 'a', min_free_space = '5000' }
        end)
        """
    )
    data, archive = (await runtime.start()).spools
    assert data.flush is True
    assert data.min_free_space == MinFree(amount=1073741824)
    assert data.min_free_inodes == MinFree(percent=5)
    assert archive.name == "archive"
    assert archive.min_free_space == MinFree(amount=5000)


BAD_SPOOLS = [
    ("kind = 'Tape'", "kind = 'Tape': expected one of 'LocalDisk', 'RocksDB'"),
    ("flush = 'yes'", "flush = 'yes': expected true or false"),
    ("min_free_space = '110%'", "invalid percentage '110%'"),
    ("min_free_space = 'lots'", "expected a percentage such as '10%' or an amount"),
    ("min_free_inodes = -1", "min_free_inodes = -1: must be at least 0"),
    ("rocks_params = { colour = 'red' }", "unknown key 'colour'"),
    ("rocks_params = { compression_type = 'Brotli' }", "compression_type = 'Brotli'"),
    ("rocks_params = { max_open_files = 'many' }", "max_open_files = 'many'"),
    ("rocks_params = { store_deadline = 'soon' }", "store_deadline = 'soon'"),
    (
        "rocks_params = { optimize_level_style_compaction = 1,"
        " optimize_universal_style_compaction = 1 }",
        "cannot both be set",
    ),
    ("colour = 'red'", "unknown key 'colour'"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_SPOOLS)
async def test_a_bad_define_spool_key_is_an_error_at_the_policy_line(
    load_policy: LoadPolicy, extra: str, message: str
) -> None:
    runtime = load_policy(
        f"""
        kumo.on('init', function()
          kumo.define_spool {{ name = 'data', path = '/tmp/x', {extra} }}
        end)
        """
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:3: define_spool: ") as info:
        await runtime.start()
    assert message in str(info.value)


# --- start_http_listener ------------------------------------------------------------------------


async def test_every_key_of_start_http_listener_as_the_reference_pages_write_them(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.start_http_listener {
            listen = '0.0.0.0:80',
            hostname = 'mail.example.com',
            trusted_hosts = { '127.0.0.1', '::1' },
            request_body_limit = 4096,
            use_tls = true,
            tls_certificate = '/path/to/cert.pem',
            tls_private_key = '/path/to/key.pem',
          }
          kumo.start_http_listener {
            listen = '127.0.0.1:8001', use_tls = true,
            tls_certificate = { key_data = 'CERT' },
            tls_private_key = {
              vault_mount = 'secret',
              vault_path = 'tls/mail.example.com.key',
              vault_key = 'private_key',
            },
          }
        end)
        """
    )
    first, second = (await runtime.start()).http_listeners
    assert (first.listen, first.hostname, first.request_body_limit) == (
        "0.0.0.0:80",
        "mail.example.com",
        4096,
    )
    assert first.trusted_hosts == ("127.0.0.1", "::1")
    assert (first.tls_certificate, first.tls_private_key) == (
        "/path/to/cert.pem",
        "/path/to/key.pem",
    )
    assert second.tls_certificate == b"CERT"  # the data itself
    assert second.tls_private_key == (  # a Vault secret, read when the listener starts
        ("vault_key", "private_key"),
        ("vault_mount", "secret"),
        ("vault_path", "tls/mail.example.com.key"),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{ vault_mount = 'secret' }", "expected a KeySource"),
        ("{ key_data = 5 }", "expected a KeySource"),
        ("5", "expected a KeySource"),
    ],
)
async def test_a_certificate_that_is_no_keysource_is_an_error(
    load_policy: LoadPolicy, value: str, message: str
) -> None:
    runtime = load_policy(
        f"""
        kumo.on('init', function()
          kumo.start_http_listener {{ use_tls = true, tls_certificate = {value} }}
        end)
        """
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:3: start_http_listener: ") as info:
        await runtime.start()
    assert message in str(info.value)


# --- configure_accounting_db_path, set_httpinject_recipient_rate_limit ---------------------------


async def test_the_accounting_path_is_relative_to_the_policy(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.configure_accounting_db_path '/var/spool/kumomta/accounting.db'
          kumo.configure_accounting_db_path 'acct.db'
        end)
        """
    )
    init = await runtime.start()
    assert init.accounting_db_path == str(runtime.path.parent / "acct.db")  # the last one


async def test_the_inject_rate_limit_example_and_nil_clearing_it(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('pre_init', function()
          kumo.set_httpinject_recipient_rate_limit 'local:10,000/s'
        end)
        """
    )
    init = await runtime.start()
    assert init.httpinject_recipient_rate == Rate(10000, 1.0, "local:10,000/s", local=True)
    cleared = load_policy(
        """
        kumo.on('pre_init', function()
          kumo.set_httpinject_recipient_rate_limit 'local:10,000/s'
          kumo.set_httpinject_recipient_rate_limit(nil)
        end)
        """,
        name="cleared.lua",
    )
    assert (await cleared.start()).httpinject_recipient_rate is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("100/s", Rate(100, 1.0, "100/s")),
        ("1_000/hr", Rate(1000, 3600.0, "1_000/hr")),
        ("20/30minute", Rate(20, 1800.0, "20/30minute")),
        ("5/d,max_burst=2", Rate(5, 86400.0, "5/d,max_burst=2", burst=2)),
    ],
)
async def test_throttle_specs_as_kumo_make_throttle_reads_them(
    load_policy: LoadPolicy, spec: str, expected: Rate
) -> None:
    runtime = load_policy(
        f"kumo.on('pre_init', function() kumo.set_httpinject_recipient_rate_limit '{spec}' end)"
    )
    assert (await runtime.start()).httpinject_recipient_rate == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("0/s", "greater than 0"), ("10/fortnight", "unknown period"), ("fast", "limit/period")],
)
async def test_a_bad_throttle_spec_is_an_error(
    load_policy: LoadPolicy, spec: str, message: str
) -> None:
    runtime = load_policy(
        f"kumo.on('pre_init', function() kumo.set_httpinject_recipient_rate_limit '{spec}' end)"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:1: ") as info:
        await runtime.start()
    assert message in str(info.value)
