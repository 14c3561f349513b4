"""`kumoclient policy check|rewrite` as a real process: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC_EXAMPLE = ROOT / "tests" / "data" / "spec_4_4.lua"
EXAMPLE_JSON = ROOT / "examples" / "dsn_rewrite.json"
OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."
INACTIVE = (
    "450 4.2.1 <someone@example.net>: Recipient address rejected: "
    "this mailbox is inactive and has been disabled"
)


def kumoclient(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kumoclient", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tmp_dsn_rewrite_json() -> Iterator[Path]:
    """/tmp/dsn_rewrite.json as the SPEC example expects; any previous file is put back."""
    target = Path("/tmp/dsn_rewrite.json")
    saved = target.read_bytes() if target.exists() else None
    target.write_bytes(EXAMPLE_JSON.read_bytes())
    yield target
    if saved is None:
        target.unlink()
    else:
        target.write_bytes(saved)


def test_spec_example_file_is_byte_for_byte_the_spec() -> None:
    spec = ROOT.parent / "shared" / "SPEC.md"
    if not spec.exists():
        pytest.skip("../shared/SPEC.md is not beside this checkout")
    block = spec.read_text().split("### 4.4", 1)[1].split("```lua\n", 1)[1].split("```", 1)[0]
    assert SPEC_EXAMPLE.read_text() == block


def test_spec_example_rewrites_over_quota_to_bounce(tmp_dsn_rewrite_json: Path) -> None:
    done = kumoclient("policy", "rewrite", SPEC_EXAMPLE, "--response", OVER_QUOTA)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["code"].strip() == "452 -> 500 (rewritten)"
    assert lines["disposition"].strip() == "Bounce"
    assert lines["result"].strip().endswith("(kumomta: status was rewritten from 452 -> 500)")
    assert lines["result"].strip().startswith("500 4.2.2 The email account")


def test_spec_example_leaves_other_temporary_failures_alone(tmp_dsn_rewrite_json: Path) -> None:
    done = kumoclient("policy", "rewrite", SPEC_EXAMPLE, "--response", "451 4.3.0 try later")
    assert done.returncode == 0, done.stderr
    assert "code:        451 (no change)" in done.stdout
    assert "disposition: TransientFailure" in done.stdout
    assert "result:      451 4.3.0 try later" in done.stdout


def test_spec_example_inactive_mailbox_rule(tmp_dsn_rewrite_json: Path) -> None:
    done = kumoclient(
        "policy",
        "rewrite",
        SPEC_EXAMPLE,
        "--response",
        INACTIVE,
        "--domain",
        "example.net",
        "--tenant",
        "t1",
        "--campaign",
        "c1",
    )
    assert done.returncode == 0, done.stderr
    assert "code:        450 -> 500 (rewritten)" in done.stdout
    assert "disposition: Bounce" in done.stdout
    assert (
        "arguments:   domain=example.net tenant='t1' campaign='c1' routing_domain=example.net"
        in done.stdout
    )
    assert done.stdout.rstrip().endswith("(kumomta: status was rewritten from 450 -> 500)")


def test_shipped_example_finds_its_json_relative_to_itself(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumoclient",
            "policy",
            "rewrite",
            str(ROOT / "examples" / "dsn_rewrite.lua"),
            "--response",
            OVER_QUOTA,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "disposition: Bounce" in done.stdout


def test_policy_check_lists_handlers_and_init_configuration() -> None:
    done = kumoclient("policy", "check", ROOT / "policies" / "default.lua")
    assert done.returncode == 0, done.stderr
    assert "default.lua: OK" in done.stdout
    for event in ("init", "get_queue_config", "get_egress_path_config"):
        assert event in done.stdout
    assert "esmtp listener 127.0.0.1:2025" in done.stdout


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = = 1\n", "policy.lua:1: unexpected symbol near '='"),
        (
            "kumo.on('init', function() end)\nkumo.on('init', function() end)\n",
            "policy.lua:2: init event already has a handler defined at",
        ),
        (
            "kumo.on('get_queue_config', function()\n"
            "  return kumo.make_queue_config{retry_intervl = '1m'}\nend)\n",
            "policy.lua:2: make_queue_config: unknown key 'retry_intervl'",
        ),
        (
            "kumo.on('init', function()\n  kumo.start_esmtp_listener{colour = 1}\nend)\n",
            "policy.lua:2: start_esmtp_listener: unknown key 'colour'",
        ),
        ("local m = kumo.regex_set_map.new({['(']= 1})\n", "compiling rules: invalid pattern '('"),
    ],
)
def test_policy_check_errors_are_one_line_and_exit_78(
    tmp_path: Path, source: str, message: str
) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(source)
    done = kumoclient("policy", "check", policy)
    assert done.returncode == 78
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_missing_policy_file_is_a_configuration_error(tmp_path: Path) -> None:
    done = kumoclient("policy", "check", tmp_path / "nope.lua")
    assert done.returncode == 78
    assert "nope.lua: cannot read policy file" in done.stderr


def test_usage_errors_exit_64() -> None:
    assert kumoclient("policy").returncode == 64
    assert kumoclient("policy", "rewrite", SPEC_EXAMPLE).returncode == 64  # no --response
    assert kumoclient("frobnicate").returncode == 64


def test_a_response_that_is_not_smtp_exits_65(tmp_dsn_rewrite_json: Path) -> None:
    done = kumoclient("policy", "rewrite", SPEC_EXAMPLE, "--response", "hello")
    assert done.returncode == 65
    assert "not an SMTP reply: 'hello'" in done.stderr


def test_failing_hook_prints_no_change_and_logs_the_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(
        "kumo.on('smtp_client_rewrite_delivery_status', function(r)\n  return {code = 500}\nend)\n"
    )
    done = kumoclient("policy", "rewrite", policy, "--response", OVER_QUOTA)
    assert done.returncode == 0
    assert "452 (no change: the hook failed:" in done.stdout
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["level"] == "error"
    assert record["policy_location"].endswith("policy.lua:1")


def test_replay_reports_what_would_change(tmp_path: Path, tmp_dsn_rewrite_json: Path) -> None:
    def record(kind: str, code: int, enhanced: tuple[int, int, int] | None, content: str) -> str:
        enh = dict(zip(("class", "subject", "detail"), enhanced, strict=True)) if enhanced else None
        return json.dumps(
            {
                "type": kind,
                "id": "0" * 32,
                "recipient": "a@example.net",
                "queue": "camp:tenant@example.net",
                "response": {
                    "code": code,
                    "enhanced_code": enh,
                    "content": content,
                    "command": "RCPT TO:<a@example.net>\r\n",
                },
            }
        )

    log = tmp_path / "20260101-000000.jsonl"
    log.write_text(
        "\n".join(
            [
                record(
                    "TransientFailure",
                    452,
                    (4, 2, 2),
                    "The email account that you tried to reach is over quota.",
                ),
                record("TransientFailure", 451, (4, 3, 0), "try later"),
                record("Delivery", 250, None, "ok"),
                record("Bounce", 550, (5, 1, 1), "no such user"),
            ]
        )
        + "\n"
    )
    done = kumoclient("policy", "rewrite", SPEC_EXAMPLE, "--replay", log)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[-1] == "3 records replayed, 1 would change"
    assert f"{log}:1 {'0' * 32} a@example.net: TransientFailure 452 -> Bounce 500" in out


def test_replay_of_a_garbled_log_exits_65(tmp_path: Path, tmp_dsn_rewrite_json: Path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text('{"type": "Bounce"\n')
    done = kumoclient("policy", "rewrite", SPEC_EXAMPLE, "--replay", log)
    assert done.returncode == 65
    assert "bad.jsonl:1: not a JSON log record" in done.stderr
