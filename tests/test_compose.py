"""The Docker rig: docker-compose.yml, the Dockerfiles and the compose policy.

No Docker engine is needed: docker-compose.yml is validated against the Compose
specification's JSON schema (tests/data/compose-spec.json, see tests/data/README.md), every
path it names is checked, the image's install steps are compared with the README's, and the
policy the rig runs is loaded and asked where it sends mail and what it makes of the test
MTA's rejections.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from kumoclient.core.reply import parse_one_line
from kumoclient.policy import MemoRegistry, PolicyRuntime
from kumoclient.records import QueueName

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
POLICY = ROOT / "docker" / "policy.lua"
RECIPIENT_ACCESS = ROOT / "docker" / "postfix" / "recipient_access"

# Where Docker puts containers: its default address pools (172.17-31.x, 192.168.x), the
# gateway a published port's connections come from, and rootless Docker's slirp4netns.
DOCKER_CLIENT_ADDRESSES = [
    "172.17.0.1",
    "172.18.0.1",
    "172.31.255.254",
    "192.168.16.1",
    "10.0.2.100",
]


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path)))
    ]


# --- the schema ---------------------------------------------------------------------------


def test_vendored_schema_is_a_valid_draft_7_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft7Validator.check_schema(schema)
    assert "draft-07" in schema["$schema"]
    assert "services" in schema["properties"]


def test_compose_file_matches_the_compose_specification() -> None:
    errors = schema_errors(load_compose())
    for line in errors:
        print(line)
    assert errors == []


@pytest.mark.parametrize(
    ("breakage", "where"),
    [
        (lambda doc: doc["services"]["kumoclient"].__setitem__("ports", "not-a-list"), "ports"),
        (lambda doc: doc.__setitem__("servics", {}), "(top)"),
        (lambda doc: doc["services"]["mta"].__setitem__("imagee", "postfix"), "mta"),
        (lambda doc: doc["services"]["kumoclient"]["depends_on"].__setitem__("mta", 3), "mta"),
    ],
    ids=["ports-not-a-list", "unknown-top-level-key", "unknown-service-key", "bad-depends-on"],
)
def test_schema_rejects_a_broken_variant(breakage: Any, where: str) -> None:
    broken = copy.deepcopy(load_compose())
    breakage(broken)
    errors = schema_errors(broken)
    assert errors, "the validator accepted a broken compose file: it is not checking anything"
    assert any(where in line for line in errors), errors


def test_no_obsolete_version_key() -> None:
    assert "version" not in load_compose()


# --- paths and ports ----------------------------------------------------------------------


def services() -> dict[str, dict[str, Any]]:
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path}: a continuation line runs off the end"
    return instructions


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def build_contexts() -> list[tuple[str, Path, Path]]:
    found = []
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        found.append((name, context, context / build.get("dockerfile", "Dockerfile")))
    return found


def test_every_build_context_and_dockerfile_exists() -> None:
    contexts = build_contexts()
    assert {name for name, _, _ in contexts} >= {"kumoclient", "mta"}
    for name, context, dockerfile in contexts:
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        for keyword, arguments in dockerfile_instructions(dockerfile):
            if keyword not in ("COPY", "ADD"):
                continue
            parts = exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
            sources = [p for p in parts[:-1] if not p.startswith("--")]
            for source in sources:
                assert (context / source).exists(), f"{dockerfile}: COPY {source} is missing"


def test_every_bind_mount_exists_and_every_named_volume_is_declared() -> None:
    declared = set(load_compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, kind = volume.get("source", ""), volume.get("type")
            else:
                source = volume.split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                assert (ROOT / source).exists(), f"{name}: bind mount {source} is missing"
            elif kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_published_ports_listen_on_loopback_only() -> None:
    # the rig relays for any private address and its MTA accepts any domain
    for name, service in services().items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: {port} is published beyond this machine"


def test_the_mta_is_not_published() -> None:
    assert "ports" not in services()["mta"]


# --- the image's install steps are the README's -------------------------------------------


def readme_install_steps() -> list[list[str]]:
    """The newcomer's command of the README: the first sh block that runs `kumoclient run`."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"^```(?:sh|bash|console)\n(.*?)^```", readme, re.M | re.S):
        command = " ".join(block.replace("\\\n", " ").split())
        if "kumoclient run" in command:
            return [shlex.split(step) for step in command.split("&&")]
    raise AssertionError("README.md has no sh block that runs `kumoclient run`")


def venv_dir(steps: list[list[str]]) -> str:
    for step in steps:
        if step[1:3] == ["-m", "venv"]:
            return step[-1]
    raise AssertionError(f"no `python -m venv DIR` step in {steps}")


def normalise(steps: list[list[str]], ignore: set[str]) -> list[list[str]]:
    """Steps with the virtual environment's directory as VENV and `ignore` options left out."""
    venv = venv_dir(steps).rstrip("/")
    return [
        [word.replace(venv + "/", "VENV/") if word != venv else "VENV" for word in step]
        for step in ([w for w in s if w not in ignore] for s in steps)
    ]


def test_dockerfile_installs_the_way_the_readme_says() -> None:
    readme = readme_install_steps()
    assert readme[-1] == ["kumoclient", "run"], readme
    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    runs = [
        shlex.split(step) for kw, args in instructions if kw == "RUN" for step in args.split("&&")
    ]
    install_run = next(
        args for kw, args in instructions if kw == "RUN" and re.search(r"\bpip install\b", args)
    )
    image = [shlex.split(step) for step in install_run.split("&&")]
    assert image in [runs[i : i + len(image)] for i in range(len(runs))]

    # The same commands in the same order. Allowed differences: the venv's directory, a
    # regular install instead of an editable one, and no pip cache in the image.
    assert normalise(image, {"--no-cache-dir"}) == normalise(readme[:-1], {"-e", "--editable"})
    assert readme[:-1][-1][:2] == ["pip", "install"]

    # `.` is the project: WORKDIR is where the project was copied to
    workdir = [args for kw, args in instructions if kw == "WORKDIR"]
    copies = [shlex.split(args) for kw, args in instructions if kw == "COPY"]
    assert workdir, "no WORKDIR: `pip install .` would install whatever / holds"
    assert [".", workdir[-1]] in copies or [".", "."] in copies

    # what `. VENV/bin/activate` means for later commands: VENV/bin first on PATH
    venv = venv_dir(image).rstrip("/")
    env = " ".join(args for kw, args in instructions if kw == "ENV")
    assert re.search(rf"\bPATH={re.escape(venv)}/bin:", env), env

    # and the README's next step is what the image and the compose service run
    [cmd] = [exec_form(args) for kw, args in instructions if kw == "CMD"]
    assert cmd[:2] == readme[-1]
    assert services()["kumoclient"]["command"][:2] == readme[-1]
    assert any(kw == "USER" and args not in ("root", "0") for kw, args in instructions)


# --- the policy the rig runs ----------------------------------------------------------------


def kumoclient_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kumoclient", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_compose_policy_loads() -> None:
    done = kumoclient_cli("policy", "check", "docker/policy.lua")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "esmtp listener 0.0.0.0:2025" in done.stdout


def test_compose_policy_matches_the_compose_file() -> None:
    compose = services()
    command = compose["kumoclient"]["command"]
    policy_in_container = command[command.index("--policy") + 1]
    # docker/ is mounted where the image copied it: the same file inside and out
    assert f"./docker:{Path(policy_in_container).parent}:ro" in compose["kumoclient"]["volumes"]
    assert Path(policy_in_container).name == POLICY.name

    runtime = PolicyRuntime(POLICY, memo=MemoRegistry())
    [listener] = runtime.run(runtime.run_init()).esmtp_listeners
    host, _, port = listener.listen.rpartition(":")
    assert host == "0.0.0.0"
    assert any(p.endswith(f":{port}") for p in compose["kumoclient"]["ports"])

    # connections from other containers and through the published port may relay
    relay = [ipaddress.ip_network(entry, strict=False) for entry in listener.relay_hosts]
    for address in DOCKER_CLIENT_ADDRESSES:
        assert any(ipaddress.ip_address(address) in net for net in relay), address

    # every domain goes to the mta service, which is not a prohibited host
    for domain in ("gmail.com", "example.net"):
        queue = runtime.run(runtime.get_queue_config(QueueName(domain)))
        assert queue.mx_list is not None
        assert [(mx.host, mx.port) for mx in queue.mx_list] == [("mta", 25)]
    assert "mta" in compose
    assert "EXPOSE 25" in (ROOT / "docker" / "postfix" / "Dockerfile").read_text()
    egress = runtime.run(runtime.get_egress_path_config("gmail.com", "unspecified", "mta"))
    assert egress.prohibited_hosts == ()


def recipient_access() -> list[tuple[str, str]]:
    """(pattern, reply) per line of the Postfix access table."""
    entries = []
    for line in RECIPIENT_ACCESS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, reply = line.split(None, 1)
            entries.append((pattern, reply.strip()))
    return entries


# What the rig shows: the rewrite rules turn the two KumoMTA-example temporary failures into
# bounces, leave an unrelated one alone, and a 5xx bounces anyway.
EXPECTED = {
    "overquota@": "Bounce",
    "inactive@": "Bounce",
    "nosuchuser@": "Bounce",
    "busy@": "TransientFailure",
}


@pytest.fixture(scope="module")
def compose_policy() -> PolicyRuntime:
    # a registry of its own: other tests' policies memoize under the same name
    return PolicyRuntime(POLICY, memo=MemoRegistry())


@pytest.mark.parametrize(("pattern", "reply"), recipient_access(), ids=lambda v: str(v)[:12])
def test_policy_classifies_the_test_mta_rejections(
    compose_policy: PolicyRuntime, pattern: str, reply: str
) -> None:
    # Postfix answers an access table's "CODE X.Y.Z TEXT" as (checked against Postfix 3.7):
    #   CODE X.Y.Z <address>: Recipient address rejected: TEXT
    code, enhanced, text = reply.split(None, 2)
    address = pattern + "example.net" if pattern.endswith("@") else pattern
    response = f"{code} {enhanced} <{address}>: Recipient address rejected: {text}"
    outcome = compose_policy.run(
        compose_policy.rewrite_delivery_status(parse_one_line(response), QueueName("example.net"))
    )
    assert outcome.error is None
    assert outcome.disposition.value == EXPECTED[pattern], outcome


def test_every_test_recipient_has_an_expectation() -> None:
    assert {pattern for pattern, _ in recipient_access()} == set(EXPECTED)
