-- The example of KumoMTA's smtp_client_rewrite_delivery_status page (SPEC 4.4), unchanged
-- except that the data file is found next to this policy: relative paths given to kumo.*
-- functions resolve against the directory of the policy file.
--
-- Try it:  kumoclient policy rewrite examples/dsn_rewrite.lua \
--            --response '452 4.2.2 The email account that you tried to reach is over quota.'

-- Compile a classifier from the json file; refresh it every 5 minutes
local get_dsn_classifier = kumo.memoize(function()
  local data = kumo.json_load 'dsn_rewrite.json'
  return kumo.regex_set_map.new(data)
end, {
  name = 'dsn_rewrite',
  ttl = '5 minutes',
  capacity = 1,
})

-- This example ignores the queue name parameters, but you could get more
-- sophisticated and use those to define rules on a per-domain/tenant/campaign basis
-- if required
kumo.on(
  'smtp_client_rewrite_delivery_status',
  function(response, domain, tenant, campaign, routing_domain)
    local map = get_dsn_classifier()
    -- Match the classifier against the response.
    -- This will return the rewritten code if any, or nil otherwise.
    return map[response]
  end
)
