-- policy-extras.listener_domains, as kumoclient ships it: the `get_listener_domain` event
-- answered from TOML or JSON data (`require 'policy-extras.listener_domains'`). Written for
-- kumoclient from the interface and the data format of KumoMTA's module.
--
--   local listener_domains = require 'policy-extras.listener_domains'
--   kumo.on('get_listener_domain',
--     listener_domains:setup { '/opt/kumomta/etc/policy/listener_domains.toml' })
--
-- `setup(sources)` takes a list of file names (`.toml`, else JSON) or inline tables, and
-- returns the handler; it may be called once. The data: each top-level key is a domain (or a
-- `*.example.com` wildcard, which does not match example.com itself, or `*` for any domain)
-- whose table holds the keys of `kumo.make_listener_domain` (relay_to, relay_from, log_oob,
-- log_arf, ttl) and `relay_from_authz`, a list of SMTP AUTH authorization identities;
-- `[listener."IP:PORT".domain]` tables apply only to connections to that listener address.
-- Several sources merge key by key, later ones winning.
--
-- A lookup takes the most specific entry whole (entries are not merged): the domain in the
-- listener's own tables, else in the common ones, else the `*` entry of the common ones, else
-- nil. When the connection authenticated as one of the entry's `relay_from_authz` identities
-- (its `authz_id`), the entry's `relay_from` becomes the client's own address: it may relay
-- mail from that sender domain. The data is read again after 5 minutes and when the
-- configuration epoch changes; `kumoclient policy check` (validate_config) reports data that
-- does not load.

local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local typing = require 'policy-extras.typing'

local mod = {}

local COMMON = '*' -- the listener key of the tables that apply to every listener

-- a key of kumo.make_listener_domain: true; a bad value: false and why; another key: false
local function listener_domain_key(name, value)
  local ok, err = pcall(kumo.make_listener_domain, { [name] = value })
  if ok then
    return true
  end
  if tostring(err):find('unknown key', 1, true) then
    return false, nil
  end
  return false, err
end

local Entry = typing.record('ListenerDomainEntry', {
  _dynamic = listener_domain_key,
  relay_from_authz = typing.option(typing.list(typing.string)),
})
local EntriesByDomain = typing.map(typing.string, Entry)
local EntriesByListener = typing.map(typing.string, EntriesByDomain)

-- merge one source's data into `target`: listener -> domain -> entry (plain tables)
local function merge_source(data, target)
  local by_listener = EntriesByListener(data.listener or {})
  local common = {}
  for domain, entry in pairs(data) do
    if domain ~= 'listener' then
      common[domain] = entry
    end
  end
  common = EntriesByDomain(common)
  local function add(listener, domain, entry)
    target[listener] = target[listener] or {}
    local merged = target[listener][domain] or {}
    for key, value in pairs(entry) do
      merged[key] = value
    end
    target[listener][domain] = merged
  end
  for domain, entry in pairs(common) do
    add(COMMON, domain, entry)
  end
  for listener, entries in pairs(by_listener) do
    for domain, entry in pairs(entries) do
      add(listener, domain, entry)
    end
  end
end

-- listener -> kumo.domain_map of its entries
local function load_data(sources)
  local merged = {}
  for _, source in ipairs(sources) do
    merge_source(utils.load_json_or_toml_file(source), merged)
  end
  local maps = {}
  for listener, entries in pairs(merged) do
    maps[listener] = kumo.domain_map.new(entries)
  end
  return maps
end
mod.load_data = load_data

local function authorized(entry, conn_meta)
  local allowed = entry.relay_from_authz
  if allowed == nil then
    return false
  end
  local authz = conn_meta:get_meta 'authz_id'
  return authz ~= nil and utils.table_contains(allowed, authz)
end

-- the entry of `domain` in `maps[listener]`, made a listener domain (or nil)
local function lookup(maps, listener, domain, conn_meta)
  local map = maps[listener]
  local entry = map and map[domain]
  if entry == nil then
    return nil
  end
  local params = {}
  for key, value in pairs(entry) do
    if key ~= 'relay_from_authz' then
      params[key] = value
    end
  end
  if authorized(entry, conn_meta) then
    local peer = utils.split_ip_port(conn_meta:get_meta 'received_from')
    params.relay_from = { peer }
  end
  return kumo.make_listener_domain(params)
end

-- the listener domain of `domain` for a connection to `listener` (see the file's text)
function mod.get_listener_domain(maps, domain, listener, conn_meta)
  return lookup(maps, listener, domain, conn_meta)
    or lookup(maps, COMMON, domain, conn_meta)
    or lookup(maps, COMMON, '*', conn_meta)
end

function mod:setup(sources)
  if mod.CONFIGURED then
    error 'listener_domains module has already been configured'
  end
  if type(sources) ~= 'table' then
    error 'listener_domains:setup: expected a list of file names or tables'
  end
  local cached_load = kumo.memoize(load_data, {
    name = 'listener_domains_data',
    ttl = '5 minutes',
    capacity = 10,
    invalidate_with_epoch = true,
  })
  mod.CONFIGURED = { data_files = sources }
  return function(domain, listener, conn_meta)
    return mod.get_listener_domain(cached_load(sources), domain, listener, conn_meta)
  end
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, err = pcall(load_data, mod.CONFIGURED.data_files)
  if not ok then
    kumo.validation_failed()
    print 'Issues found in the combined set of listener_domain files:'
    for _, source in ipairs(mod.CONFIGURED.data_files) do
      print(type(source) == 'table' and ' - (inline table)' or (' - ' .. tostring(source)))
    end
    print(err)
  end
end)

return mod
