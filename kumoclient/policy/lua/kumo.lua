-- The `kumo` functions written in Lua: memoize, regex_set_map, the configuration
-- makers, logging, reject, the message object, spawn_task and the invoke_* functions.
--
-- Host callables answer `true, value` or `false, message`; failures become Lua errors naming
-- the policy file and line of the caller (core.fail).

local core = ...
local kumo, internal, host, raw = core.kumo, core.internal, core.host, core.raw
local fail, safe_tostring = core.fail, core.safe_tostring
local error, type, tostring, select, rawget = error, type, tostring, select, rawget
local setmetatable, pairs = setmetatable, pairs
local pack, unpack, concat = table.pack, table.unpack, table.concat
local math_type = math.type
local raw_xpcall = raw.xpcall

-- Objects that stand for Python values (regex maps, typed configs, LuaObjects), weakly keyed.
local opaque = setmetatable({}, { __mode = 'k' })
core.opaque = opaque

function internal.opaque_of(t)
  return opaque[t]
end

local function checked(ok, value)
  if not ok then
    fail(value)
  end
  return value
end
core.checked = checked

------------------------------------------------------------------------------
-- kumo.reject
------------------------------------------------------------------------------

local RejectMT = { __name = 'kumo.reject', __metatable = false }
RejectMT.__tostring = function(r)
  return 'rejected: ' .. tostring(r.code) .. ' ' .. tostring(r.text)
end

local DISCONNECT = { If421 = true, FollowWith421 = true, ForceDisconnect = true }

local function rejection(name, code, text, disconnect)
  if math_type(code) ~= 'integer' or code < 400 or code > 599 then
    fail(name .. ': code must be an integer from 400 to 599, got ' .. tostring(code))
  end
  if type(text) ~= 'string' then
    fail(name .. ': text must be a string, got ' .. type(text))
  end
  if not DISCONNECT[disconnect] then
    fail(name .. ": expected one of 'If421', 'FollowWith421' or 'ForceDisconnect', got "
      .. safe_tostring(disconnect))
  end
  local rejected = setmetatable({ code = code, text = text, disconnect = disconnect }, RejectMT)
  core.rejections[rejected] = true
  error(rejected, 0)
end

-- refuse with `code text`; an SMTP session goes on (closed after a 421)
function kumo.reject(code, text)
  rejection('kumo.reject', code, text, 'If421')
end

-- refuse with `code text` and end an SMTP session (`disconnect`: see docs/policy.md)
function kumo.disconnect(code, text, disconnect)
  if disconnect == nil then
    disconnect = 'ForceDisconnect'
  end
  rejection('kumo.disconnect', code, text, disconnect)
end

------------------------------------------------------------------------------
-- memoize
------------------------------------------------------------------------------

local HIT, MISS, CACHED_ERROR, WAIT = 1, 2, 3, 4
local POPULATE_ATTEMPTS = 3

local function interrupted_call(err)
  local current = core.current
  return core.is_abort(err) or core.is_memory_error(err)
    or (current ~= nil and current.abort ~= nil)
end

-- compute the value of `key` (this caller missed): store it, or the error
local function populate(fn, cache, key, ...)
  local results = pack(raw_xpcall(fn, core.relocate, ...))
  if not results[1] then
    local err = results[2]
    if interrupted_call(err) then
      host.memo_abandon(cache, key) -- waiters compute it themselves
      error(err, 0)
    end
    local stale, old = host.memo_put_error(cache, key, safe_tostring(err))
    if stale then
      return old
    end
    error(err, 0)
  end
  local result = results[2]
  if results.n > 2 then
    result = { unpack(results, 2, results.n) }
  end
  return checked(host.memo_put(cache, key, result))
end

function kumo.memoize(fn, params)
  if type(fn) ~= 'function' then
    fail('kumo.memoize: the first argument must be a function, got ' .. type(fn))
  end
  local cache = checked(host.memoize_new(params))
  return function(...)
    local attempt, deadline = 1, nil
    while true do
      local state, value, wait_until = host.memo_get(cache, ...)
      if state == HIT then
        return value
      elseif state == CACHED_ERROR then
        error(value, 0)
      elseif state == MISS then
        return populate(fn, cache, value, ...)
      elseif state ~= WAIT then
        fail(value)
      end
      -- another call computes this value: wait for it (populate_timeout)
      deadline = deadline or wait_until
      local ok, outcome, stale = core.await('a memoized function', 'memo_wait', cache, value, deadline)
      if not ok then
        if attempt >= POPULATE_ATTEMPTS or not host.memo_retries(cache) then
          fail(outcome)
        end
        attempt, deadline = attempt + 1, nil
      elseif outcome == 'stale' then
        return stale
      end
    end
  end
end

------------------------------------------------------------------------------
-- regex_set_map
------------------------------------------------------------------------------

-- A map proxy: indexing it calls `lookup` (Python) with the subject.
function internal.make_map_proxy(lookup)
  local proxy = setmetatable({}, {
    __index = function(_, subject)
      local ok, value = raw.pcall(lookup, subject)
      if not ok then
        fail(safe_tostring(value))
      end
      return value
    end,
    __newindex = function()
      fail('regex_set_map is read-only')
    end,
    __name = 'regex_set_map',
    __metatable = 'regex_set_map',
  })
  opaque[proxy] = lookup
  return proxy
end

kumo.regex_set_map = {}

function kumo.regex_set_map.new(rules)
  local lookup = checked(host.regex_set_map_new(rules))
  local proxy = internal.make_map_proxy(lookup)
  return proxy
end

------------------------------------------------------------------------------
-- configuration
------------------------------------------------------------------------------

-- A typed configuration object: reads through to the fields it was made from.
function internal.make_config_proxy(kind, record, fields)
  local proxy = setmetatable({}, {
    __index = fields,
    __newindex = function()
      fail(kind .. ' is read-only')
    end,
    __name = kind,
    __metatable = kind,
  })
  opaque[proxy] = record
  return proxy
end

local function maker(kind)
  return function(params)
    local record = checked(host.make_config(kind, params, core.source_of()))
    local proxy = internal.make_config_proxy(kind, record, params)
    return proxy
  end
end

kumo.make_queue_config = maker('make_queue_config')
kumo.make_egress_path = maker('make_egress_path')
kumo.make_listener_domain = maker('make_listener_domain')

local function configurer(kind)
  return function(params)
    checked(host.configure(kind, params, core.source_of()))
  end
end

kumo.start_esmtp_listener = configurer('start_esmtp_listener')
kumo.start_http_listener = configurer('start_http_listener')
kumo.define_spool = configurer('define_spool')
kumo.configure_local_logs = configurer('configure_local_logs')
kumo.configure_redis_throttles = configurer('configure_redis_throttles')
kumo.configure_accounting_db_path = configurer('configure_accounting_db_path')
kumo.set_httpinject_recipient_rate_limit = configurer('set_httpinject_recipient_rate_limit')
kumo.dns = { configure_resolver = configurer('configure_resolver') }

------------------------------------------------------------------------------
-- logging
------------------------------------------------------------------------------

local function logger(level)
  return function(...)
    local n = select('#', ...)
    local parts = {}
    for i = 1, n do
      parts[i] = safe_tostring((select(i, ...)))
    end
    host.log(level, core.where(2) or '?', concat(parts, ' '))
  end
end

kumo.log_error = logger('error')
kumo.log_warn = logger('warning')
kumo.log_info = logger('info')
kumo.log_debug = logger('debug')

------------------------------------------------------------------------------
-- background tasks and events fired from Lua
------------------------------------------------------------------------------

function kumo.spawn_task(params)
  checked(host.spawn_task(params))
end

-- fire `event` from inside a handler; its first value, or its failure raised here
local function invoke(event, ...)
  local status, _, first, second = core.dispatch(event, ...)
  local current = core.current
  if current ~= nil and current.abort ~= nil then
    error(current.abort, 0)
  end
  if status == 'error' then
    error(first, 0)
  elseif status == 'reject' then
    fail('kumo.reject(' .. tostring(first) .. ', ' .. safe_tostring(second) .. ') in ' .. event
      .. ' is not allowed here')
  end
  return first
end

-- kumo.invoke_<event>(...): the event's handlers called with the arguments Python derives
-- from the caller's (a queue name is split), the result as the params of its make_* function
local function invoker(event)
  return function(...)
    local args = pack(host.invoke_arguments(event, ...))
    if not args[1] then
      fail(args[2])
    end
    local value = invoke(event, unpack(args, 2, args.n))
    return checked(host.invoke_result(event, value, args[2]))
  end
end

kumo.invoke_get_queue_config = invoker('get_queue_config')
kumo.invoke_get_egress_path_config = invoker('get_egress_path_config')
kumo.invoke_get_egress_source = invoker('get_egress_source')
kumo.invoke_get_egress_pool = invoker('get_egress_pool')

_G.kumo = kumo
package.loaded.kumo = kumo

return core
