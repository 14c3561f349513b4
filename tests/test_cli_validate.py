"""`kumoclient run --validate` and `kumoclient policy check`: pre_init, init, validate_config,
and for `policy check` each configuration event once with sample arguments."""

from __future__ import annotations

from pathlib import Path

from tests.daemon_process import free_port, kumoclient

VALIDATED = """
kumo.on('init', function()
  kumo.start_esmtp_listener { listen = '127.0.0.1:{port}' }
  kumo.define_spool { name = 'data', path = '{spool}' }
end)
kumo.on('validate_config', function()
  if os.getenv('BREAK_IT') == nil then return end
  print('the queue data is not valid')
  kumo.validation_failed()
end)
"""


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "policy.lua"
    path.write_text(source)
    return path


def test_run_validate_exits_0_and_starts_nothing(tmp_path: Path) -> None:
    port, spool = free_port(), tmp_path / "spool"
    policy = write(tmp_path, VALIDATED.replace("{port}", str(port)).replace("{spool}", str(spool)))
    done = kumoclient("run", "--validate", "--policy", policy)
    assert done.returncode == 0, done.stderr
    assert not spool.exists()  # no spool opened, nothing listened


def test_run_validate_exits_78_when_the_policy_says_it_is_not_valid(tmp_path: Path) -> None:
    policy = write(tmp_path, "kumo.on('validate_config', function() kumo.validation_failed() end)")
    done = kumoclient("run", "--validate", "--policy", policy)
    assert done.returncode == 78
    assert "kumo.validation_failed" in done.stderr
    raising = write(tmp_path, "kumo.on('validate_config', function()\n  error('bad data')\nend)")
    done = kumoclient("run", "--validate", "--policy", raising)
    assert done.returncode == 78
    assert "policy.lua:2: bad data" in done.stderr


def test_policy_check_calls_the_configuration_events_with_sample_arguments(
    tmp_path: Path,
) -> None:
    policy = write(
        tmp_path,
        """
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { retry_interval = '5 minutes' }
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path { connection_limit = 3 }
end)
kumo.on('smtp_client_rewrite_delivery_status', function(response) return 500 end)
""",
    )
    done = kumoclient("policy", "check", policy)
    assert done.returncode == 0, done.stderr
    assert "sample get_queue_config('example.com', nil, nil, nil): QueueConfig(" in done.stdout
    assert "retry_interval=300.0" in done.stdout
    assert "connection_limit=3" in done.stdout
    assert "sample smtp_client_rewrite_delivery_status(" in done.stdout


def test_policy_check_reports_a_misspelt_key_inside_get_egress_path_config(
    tmp_path: Path,
) -> None:
    policy = write(
        tmp_path,
        "kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)\n"
        "  local limit = 3\n"
        "  return kumo.make_egress_path { conection_limit = limit }\n"
        "end)\n",
    )
    done = kumoclient("policy", "check", policy)
    assert done.returncode == 78
    assert "policy.lua:3: make_egress_path: unknown key 'conection_limit'" in done.stderr
    assert "kumoclient-" not in done.stderr
