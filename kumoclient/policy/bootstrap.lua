-- The Lua half of the policy runtime: the `kumo` module and the event dispatcher.
--
-- Loaded once per runtime, before the policy file, with `host`: a table of Python callables.
-- Every Python callable stays in an upvalue of this chunk; policy code only ever sees Lua
-- functions and tables. `debug` is captured here and removed from the globals, so upvalues
-- (and the registry) are out of reach, and the `python` module lupa installs is removed.
-- Host callables answer `true, value` or `false, message`; failures become Lua errors
-- that name the policy file and line of the caller.

local raw_host, event_kinds, module_functions, module_values = ...

local getinfo, traceback = debug.getinfo, debug.traceback
local error, type, tostring, select, pcall, xpcall = error, type, tostring, select, pcall, xpcall
local setmetatable, rawequal = setmetatable, rawequal
local pack, unpack, concat = table.pack, table.unpack, table.concat
local math_type = math.type
local pairs, raw_load_file = pairs, loadfile

-- tostring that cannot raise (a policy may give values a __tostring that errors)
local function safe_tostring(value)
  local ok, text = pcall(tostring, value)
  if ok and type(text) == 'string' then
    return text
  end
  return '(' .. type(value) .. ')'
end

-- Every host callable is called through pcall: if lupa itself fails (say, on a string that
-- is not UTF-8) the error becomes a string here instead of reaching Lua as a Python object.
local function guarded(fn)
  return function(...)
    local results = pack(pcall(fn, ...))
    if not results[1] then
      return false, safe_tostring(results[2])
    end
    return unpack(results, 2, results.n)
  end
end

local host = {}
for name, fn in pairs(raw_host) do
  host[name] = guarded(fn)
end

python = nil
package.loaded.python = nil
debug = nil
package.loaded.debug = nil

-- Text chunks only: precompiled bytecode can break out of the Lua VM. No C modules either.
local raw_load = load
function load(...)
  local chunk, name, _, env = ...
  if select('#', ...) >= 4 then
    return raw_load(chunk, name, 't', env)
  end
  return raw_load(chunk, name, 't')
end
function loadfile(...)
  local path, _, env = ...
  if select('#', ...) >= 3 then
    return raw_load_file(path, 't', env)
  end
  return raw_load_file(path, 't')
end
function dofile(path)
  local chunk, err = raw_load_file(path, 't')
  if chunk == nil then
    error(err, 2)
  end
  return chunk()
end
package.loadlib = nil
package.cpath = ''
package.searchers[4] = nil
package.searchers[3] = nil
-- Lua's own file searcher would load precompiled chunks too: search, then load as text
local searchpath = package.searchpath
package.searchers[2] = function(name)
  local path, err = searchpath(name, package.path)
  if path == nil then
    return err
  end
  local chunk, load_error = raw_load_file(path, 't')
  if chunk == nil then
    error("error loading module '" .. name .. "' from file '" .. path .. "':\n\t" .. load_error, 0)
  end
  return chunk, path
end

-- file:line of the function `level` frames above the caller of `location`; C frames (pcall,
-- a tail call's gap) are skipped so the answer is the nearest Lua line
local function location(level)
  local info = getinfo(level + 1, 'Sl')
  while info ~= nil and info.what == 'C' do
    level = level + 1
    info = getinfo(level + 1, 'Sl')
  end
  if info == nil then
    return '?'
  end
  local src = info.source
  if src:sub(1, 1) == '@' or src:sub(1, 1) == '=' then
    src = src:sub(2)
  else
    src = info.short_src
  end
  return src .. ':' .. tostring(info.currentline)
end

local function source_of(level)
  local info = getinfo(level + 1, 'S')
  if info == nil then
    return nil
  end
  return info.source
end

-- raise `message` as if it came from the code `level` frames above the caller of `fail`
local function fail(message, level)
  error(location(level + 1) .. ': ' .. message, 0)
end

local kumo = {}
local internal = {}

-- Objects that stand for Python values (regex maps, typed configs), weakly keyed.
local opaque = setmetatable({}, { __mode = 'k' })

function internal.opaque_of(t)
  return opaque[t]
end

------------------------------------------------------------------------------
-- events
------------------------------------------------------------------------------

local handlers = {}
local loading = true

function internal.finish_loading()
  loading = false
end

function kumo.on(name, fn)
  if not loading then
    fail('kumo.on may only be called at the top level of the policy file, not inside an event handler', 2)
  end
  if type(name) ~= 'string' then
    fail('kumo.on: the event name must be a string, got ' .. type(name), 2)
  end
  if type(fn) ~= 'function' then
    fail('kumo.on(' .. name .. '): the handler must be a function, got ' .. type(fn), 2)
  end
  local kind = event_kinds[name]
  if kind == nil then
    fail("kumo.on: unknown event '" .. name .. "'", 2)
  end
  local list = handlers[name]
  if list == nil then
    list = {}
    handlers[name] = list
  end
  if kind == 'single' and #list > 0 then
    fail(name .. ' event already has a handler defined at ' .. list[1].where, 2)
  end
  list[#list + 1] = { fn = fn, where = location(2) }
end

-- Rejections are tables recorded here; no comparison that a policy could intercept.
local rejections = setmetatable({}, { __mode = 'k' })
local RejectMT = { __name = 'kumo.reject', __metatable = false }
RejectMT.__tostring = function(r)
  return 'rejected: ' .. tostring(r.code) .. ' ' .. tostring(r.text)
end

function kumo.reject(code, text)
  if math_type(code) ~= 'integer' or code < 400 or code > 599 then
    fail('kumo.reject: code must be an integer from 400 to 599, got ' .. tostring(code), 2)
  end
  if type(text) ~= 'string' then
    fail('kumo.reject: text must be a string, got ' .. type(text), 2)
  end
  local rejection = setmetatable({ code = code, text = text }, RejectMT)
  rejections[rejection] = true
  error(rejection, 0)
end

local failures = setmetatable({}, { __mode = 'k' })

local function on_error(err)
  if rejections[err] then
    return err
  end
  local message = safe_tostring(err)
  local failure = { message = message, traceback = traceback(message, 2) }
  failures[failure] = true
  return failure
end

local function failure(err, where)
  if rejections[err] then
    return 'reject', rawget(err, 'code'), rawget(err, 'text'), where
  end
  if failures[err] then
    return 'error', rawget(err, 'message'), rawget(err, 'traceback'), where
  end
  return 'error', safe_tostring(err), nil, where -- an error inside the error handler
end

-- Calls the handlers of `name` in order until one returns non-nil.
-- Answers status, value, detail, where: 'none' (no handler) | 'ok', result, nil, where |
-- 'error', message, traceback, where | 'reject', code, text, where.
function internal.fire_first(name, ...)
  local list = handlers[name]
  if list == nil then
    return 'none'
  end
  for i = 1, #list do
    local h = list[i]
    local ok, result = xpcall(h.fn, on_error, ...)
    if not ok then
      return failure(result, h.where)
    end
    if result ~= nil then
      return 'ok', result, nil, h.where
    end
  end
  return 'ok', nil, nil, list[#list].where
end

-- Calls every handler of `name`; stops at the first failure. Same answers as fire_first.
function internal.fire_all(name, ...)
  local list = handlers[name]
  if list == nil then
    return 'none'
  end
  for i = 1, #list do
    local h = list[i]
    local ok, result = xpcall(h.fn, on_error, ...)
    if not ok then
      return failure(result, h.where)
    end
  end
  return 'ok', nil, nil, list[#list].where
end

function internal.registered()
  local out = {}
  for name, list in pairs(handlers) do
    local wheres = {}
    for i = 1, #list do
      wheres[i] = list[i].where
    end
    out[name] = wheres
  end
  return out
end

------------------------------------------------------------------------------
-- memoize
------------------------------------------------------------------------------

local HIT, MISS, CACHED_ERROR = 1, 2, 3

function kumo.memoize(fn, params)
  if type(fn) ~= 'function' then
    fail('kumo.memoize: the first argument must be a function, got ' .. type(fn), 2)
  end
  local ok, cache = host.memoize_new(params)
  if not ok then
    fail(cache, 2)
  end
  return function(...)
    local state, value = host.memo_get(cache, ...)
    if state == HIT then
      return value
    elseif state == CACHED_ERROR then
      error(value, 0)
    elseif state ~= MISS then
      fail(value, 2)
    end
    local key = value
    local results = pack(pcall(fn, ...))
    if not results[1] then
      local stale, old = host.memo_put_error(cache, key, tostring(results[2]))
      if stale then
        return old
      end
      error(results[2], 0)
    end
    local result = results[2]
    if results.n > 2 then
      result = { unpack(results, 2, results.n) }
    end
    local stored, converted = host.memo_put(cache, key, result)
    if not stored then
      fail(converted, 2)
    end
    return converted
  end
end

------------------------------------------------------------------------------
-- regex_set_map
------------------------------------------------------------------------------

-- A map proxy: indexing it calls `lookup` (Python) with the subject.
function internal.make_map_proxy(lookup)
  local proxy = setmetatable({}, {
    __index = function(_, subject)
      local ok, value = pcall(lookup, subject)
      if not ok then
        error(safe_tostring(value), 2)
      end
      return value
    end,
    __newindex = function()
      error('regex_set_map is read-only', 2)
    end,
    __name = 'regex_set_map',
    __metatable = 'regex_set_map',
  })
  opaque[proxy] = lookup
  return proxy
end

kumo.regex_set_map = {}

function kumo.regex_set_map.new(rules)
  local ok, lookup = host.regex_set_map_new(rules)
  if not ok then
    fail(lookup, 2)
  end
  local proxy = internal.make_map_proxy(lookup)
  return proxy
end

------------------------------------------------------------------------------
-- configuration
------------------------------------------------------------------------------

local function checked(ok, value)
  if not ok then
    -- level 3: checked <- kumo function <- the policy code that called it
    fail(value, 3)
  end
  return value
end

-- A typed configuration object: reads through to the fields it was made from.
function internal.make_config_proxy(kind, record, fields)
  local proxy = setmetatable({}, {
    __index = fields,
    __newindex = function()
      error(kind .. ' is read-only', 2)
    end,
    __name = kind,
    __metatable = kind,
  })
  opaque[proxy] = record
  return proxy
end

local function maker(kind)
  return function(params)
    local record = checked(host.make_config(kind, params, source_of(2)))
    local proxy = internal.make_config_proxy(kind, record, params)
    return proxy
  end
end

kumo.make_queue_config = maker('make_queue_config')
kumo.make_egress_path = maker('make_egress_path')

local function configurer(kind)
  return function(params)
    checked(host.configure(kind, params, source_of(2)))
  end
end

kumo.start_esmtp_listener = configurer('start_esmtp_listener')
kumo.start_http_listener = configurer('start_http_listener')
kumo.define_spool = configurer('define_spool')
kumo.configure_local_logs = configurer('configure_local_logs')
kumo.configure_redis_throttles = configurer('configure_redis_throttles')
kumo.dns = { configure_resolver = configurer('configure_resolver') }

------------------------------------------------------------------------------
-- logging
------------------------------------------------------------------------------

local function logger(level)
  return function(...)
    local n = select('#', ...)
    local parts = {}
    for i = 1, n do
      parts[i] = tostring((select(i, ...)))
    end
    host.log(level, location(2), concat(parts, ' '))
  end
end

kumo.log_error = logger('error')
kumo.log_warn = logger('warning')
kumo.log_info = logger('info')
kumo.log_debug = logger('debug')

------------------------------------------------------------------------------
-- msg
------------------------------------------------------------------------------

-- A `msg` for the reception events; `methods` are Python callables answering ok, value.
function internal.make_msg(methods)
  local msg = {}
  for name, fn in pairs(methods) do
    local call = guarded(fn)
    msg[name] = function(self, ...)
      local ok, value = call(self, ...)
      if not ok then
        fail(value, 2)
      end
      return value
    end
  end
  return setmetatable(msg, { __name = 'Message', __metatable = 'Message' })
end

------------------------------------------------------------------------------
-- modules written in Python (kumoclient.policy.api)
------------------------------------------------------------------------------

-- kumo.a.b.c = value, making the tables on the way
local function install(path, value)
  local t = kumo
  local parts = {}
  for part in path:gmatch('[^.]+') do
    parts[#parts + 1] = part
  end
  for i = 1, #parts - 1 do
    local inner = t[parts[i]]
    if inner == nil then
      inner = {}
      t[parts[i]] = inner
    end
    t = inner
  end
  t[parts[#parts]] = value
end

-- lupa hands Lua strings to Python as UTF-8 text and fails on any other bytes; a string
-- argument that is not UTF-8 crosses as a table standing for its bytes (each byte as the
-- code point of the same number, which convert.to_python turns back into `bytes`)
local utf8_len, string_gsub, string_char, utf8_char = utf8.len, string.gsub, string.char, utf8.char
local LATIN1 = {}
for b = 128, 255 do
  LATIN1[string_char(b)] = utf8_char(b)
end

local function binary_safe(...)
  local n = select('#', ...)
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == 'string' and utf8_len(v) == nil then
      local args = pack(...)
      for j = i, n do
        local a = args[j]
        if type(a) == 'string' and utf8_len(a) == nil then
          local marker = {}
          opaque[marker] = (string_gsub(a, '[\128-\255]', LATIN1))
          args[j] = marker
        end
      end
      return unpack(args, 1, n)
    end
  end
  return ...
end

local function module_function(name, wants_source)
  return function(...)
    local results
    if wants_source then
      results = pack(host.module_call(name, source_of(2), binary_safe(...)))
    else
      results = pack(host.module_call(name, nil, binary_safe(...)))
    end
    if not results[1] then
      fail(results[2], 2)
    end
    return unpack(results, 2, results.n)
  end
end

for name, wants_source in pairs(module_functions) do
  install(name, module_function(name, wants_source))
end
for name, value in pairs(module_values) do
  install(name, value)
end

-- A Python object (policy.api.LuaObject) as Lua holds it: methods, indexing, length,
-- tostring, calls and pairs go to the object; passed back to Python it is the object.
function internal.make_object(target, name, methods)
  local method_functions = {}
  for i = 1, #methods do
    local method = methods[i]
    method_functions[method] = function(_, ...)
      local results = pack(host.object_method(target, method, binary_safe(...)))
      if not results[1] then
        fail(results[2], 2)
      end
      return unpack(results, 2, results.n)
    end
  end
  -- (metamethods call `hook` without a tail call, so that level 3 is the policy's line)
  local function hook(which, ...)
    local results = pack(host.object_hook(target, which, binary_safe(...)))
    if not results[1] then
      fail(results[2], 3)
    end
    return unpack(results, 2, results.n)
  end
  local proxy
  -- a binary operator: the object's hook when it is the left operand, `r<hook>` when right
  local function binary(which)
    return function(a, b)
      if rawequal(a, proxy) then
        local result = hook(which, b)
        return result
      end
      local result = hook('r' .. which, a)
      return result
    end
  end
  proxy = setmetatable({}, {
    __index = function(_, key)
      local method = method_functions[key]
      if method ~= nil then
        return method
      end
      local value = hook('index', key)
      return value
    end,
    __newindex = function(_, key, value)
      hook('newindex', key, value)
    end,
    __len = function()
      local length = hook('len')
      return length
    end,
    __tostring = function()
      local text = hook('tostring')
      return text
    end,
    __call = function(_, ...)
      local results = pack(hook('call', ...))
      return unpack(results, 1, results.n)
    end,
    __eq = function(a, b)
      local equal = hook('eq', rawequal(a, proxy) and b or a)
      return equal
    end,
    __add = binary('add'),
    __sub = binary('sub'),
    __close = function()
      hook('close')
    end,
    __pairs = function()
      local list = hook('pairs')
      local i = 0
      return function()
        i = i + 1
        local pair = list[i]
        if pair == nil then
          return nil
        end
        return pair[1], pair[2]
      end, nil, nil
    end,
    __name = name,
    __metatable = name,
  })
  opaque[proxy] = target
  return proxy
end

------------------------------------------------------------------------------

-- Loads and runs the policy file; errors come back as values, never raised.
function internal.load_policy(path)
  local chunk, err = raw_load_file(path, 't')
  if chunk == nil then
    return false, tostring(err), nil
  end
  local ok, result = xpcall(chunk, on_error)
  if not ok then
    local _, message, trace = failure(result, nil)
    if rejections[result] then
      message = 'kumo.reject called while loading the policy'
    end
    return false, safe_tostring(message), trace
  end
  return true, nil, nil
end

_G.kumo = kumo
package.loaded.kumo = kumo

return internal
