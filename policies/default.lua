-- kumoclient's default policy: what `kumoclient run` uses when no --policy is given.
--
-- Copy this file as the starting point of your own policy (`kumoclient run --policy
-- my-policy.lua`). It uses KumoMTA's API: every kumo.* call and event below works the same
-- in KumoMTA. Check a policy with `kumoclient policy check FILE`.

-- init runs once when the daemon starts: listeners, spool and log locations.
kumo.on('init', function()
  -- Accept mail for delivery over SMTP. Only loopback clients may relay (relay_hosts);
  -- everyone else is refused at RCPT TO with 550 5.7.1. Never make this an open relay.
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2025',
    relay_hosts = { '127.0.0.1', '::1' },
  }
  -- The spool and the delivery log default to ./kumoclient-data/spool and
  -- ./kumoclient-data/logs (or --data-dir DIR); name other places here if you like:
  -- kumo.define_spool { name = 'data', path = '/var/spool/kumoclient' }
  -- kumo.configure_local_logs { log_dir = '/var/log/kumoclient', max_segment_duration = '1h' }
end)

-- Retry and expiry per queue (campaign:tenant@domain!routing_domain). These are the
-- defaults; change them per domain, tenant or campaign.
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '20 minutes', -- first retry; doubles after each failure
    max_age = '7 days',            -- then the message expires (an Expiration record)
  }
end)

-- How to talk to the remote servers of a site.
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Opportunistic', -- STARTTLS when offered, certificates verified
    connection_limit = 32,        -- connections per site
  }
end)

-- To turn chosen temporary failures into bounces (or the reverse), register
-- smtp_client_rewrite_delivery_status; see examples/dsn_rewrite.lua.
