-- Rules per tenant, campaign and destination: every argument of
-- smtp_client_rewrite_delivery_status in use.
--
-- Queue names are `campaign:tenant@domain!routing_domain` (SPEC 1). Here:
--   * the tenant 'strict' wants soft bounces to stop quickly: any 4.2.2 (mailbox full)
--     becomes a bounce for it, whatever the domain;
--   * the campaign 'newsletter' (any tenant) is bulk mail: a 421 rate-limit deferral from a
--     big mailbox provider is retried as usual, but a 450 "mailbox unavailable" bounces;
--   * mail routed through a smarthost (routing_domain set, e.g. `!relay.example.net`) trusts
--     the smarthost's 5xx as final, except its own 554 5.7.1 "relay temporarily refused",
--     which is retried (rewritten to 451);
--   * everything else keeps the server's code.
--
-- Try it:
--   kumoclient policy rewrite examples/per_tenant.lua --tenant strict \
--     --domain example.com --response '452 4.2.2 Mailbox full'

local BIG_PROVIDERS = { ['gmail.com'] = true, ['yahoo.com'] = true, ['outlook.com'] = true }

kumo.on(
  'smtp_client_rewrite_delivery_status',
  function(response, domain, tenant, campaign, routing_domain)
    local code = tonumber(response:sub(1, 3))

    if tenant == 'strict' and response:find(' 4.2.2 ', 1, true) then
      return 500
    end

    if campaign == 'newsletter' and BIG_PROVIDERS[domain] and code == 450 then
      return 550
    end

    if routing_domain ~= domain and code == 554 and response:find(' 5.7.1 ', 1, true) then
      return 451
    end

    return nil -- keep the server's code
  end
)
