-- Local testing: every message goes to one local MTA (Postfix, Mailpit, smtp-sink...)
-- whatever its domain, so nothing leaves the machine. Use it to try a policy's rewrite rules
-- against a real server:
--
--   kumoclient run --policy examples/local_mta.lua
--   swaks --server 127.0.0.1:2025 --to someone@example.net
--
-- The MTA's address comes from the environment (LOCAL_MTA, default 127.0.0.1:25);
-- `prohibited_hosts = {}` allows loopback destinations, which the default refuses
-- (550 5.4.4) so that a misrouted production daemon cannot mail itself.

local LOCAL_MTA = os.getenv('LOCAL_MTA') or '127.0.0.1:25'

kumo.on('init', function()
  kumo.start_esmtp_listener { listen = '127.0.0.1:2025' }
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { smtp = { mx_list = { LOCAL_MTA } } },
    retry_interval = '1 minute',
    max_age = '1 hour',
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    prohibited_hosts = {},
    enable_tls = 'OpportunisticInsecure', -- local MTAs rarely have a trusted certificate
  }
end)

-- Keep KumoMTA's example rules: the over-quota and inactive-mailbox replies become bounces.
local get_dsn_classifier = kumo.memoize(function()
  return kumo.regex_set_map.new(kumo.json_load 'dsn_rewrite.json')
end, { name = 'dsn_rewrite', ttl = '5 minutes', capacity = 1 })

kumo.on('smtp_client_rewrite_delivery_status', function(response)
  return get_dsn_classifier()[response]
end)
