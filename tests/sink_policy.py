"""The policy the daemon tests run: every queue delivers to one local sink, retrying after a
second, no TLS, no prohibited hosts."""

from __future__ import annotations

from pathlib import Path


def write_sink_policy(
    path: Path, port: int, *, init: str = "", connection_limit: int | None = None
) -> Path:
    """Write the policy to `path`: mail goes to 127.0.0.1:`port`; `init` is the body of the
    init handler; `connection_limit` per site when given."""
    limit = f"connection_limit = {connection_limit}," if connection_limit is not None else ""
    path.write_text(
        f"""
kumo.on('init', function() {init} end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1s', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled', {limit} }}
end)
"""
    )
    return path
