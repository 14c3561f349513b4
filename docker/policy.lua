-- The policy of the compose rig (docker-compose.yml): kumoclient in one container, a Postfix
-- test MTA in another (service `mta`, configured in docker/postfix/). Every message goes to
-- that MTA, whatever its domain, so nothing ever leaves your machine; the MTA stores what it
-- accepts and answers a few chosen recipients with rejections (docker/postfix/recipient_access).
--
-- Put the rules you want to try in dsn_rewrite.json next to this file (or your own hooks
-- below), then reload with `docker compose kill -s HUP kumoclient`.
-- Check it without Docker: kumoclient policy check docker/policy.lua

kumo.on('init', function()
  -- The compose network is not loopback: the published port reaches the container from the
  -- Docker gateway, other containers from their own addresses. Private ranges may relay;
  -- docker-compose.yml publishes 2025 on the host's 127.0.0.1 only.
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:2025',
    relay_hosts = { '127.0.0.1', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16' },
  }
  -- the spool and the logs live under --data-dir (/data, a named volume)
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    -- every queue delivers to the test MTA instead of the domain's MX
    protocol = { smtp = { mx_list = { 'mta:25' } } },
    -- short enough to watch retries and expiry while testing
    retry_interval = '1 minute',
    max_age = '1 hour',
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    -- the MTA is on a private address; the default list only refuses loopback, an empty
    -- list says so explicitly
    prohibited_hosts = {},
    enable_tls = 'Opportunistic', -- the test MTA offers no STARTTLS: plain text
    connection_limit = 4,
  }
end)

-- KumoMTA's rewrite example (SPEC 4.4), with its rules in dsn_rewrite.json next to this file.
local get_dsn_classifier = kumo.memoize(function()
  local data = kumo.json_load 'dsn_rewrite.json'
  return kumo.regex_set_map.new(data)
end, { name = 'dsn_rewrite', ttl = '5 minutes', capacity = 1 })

kumo.on(
  'smtp_client_rewrite_delivery_status',
  function(response, domain, tenant, campaign, routing_domain)
    local map = get_dsn_classifier()
    return map[response] -- a code such as 500, or nil to leave the reply alone
  end
)
