-- The `kumo` functions and objects written in Python (kumoclient.policy.api), and io.popen.
--
-- A synchronous Python function is called directly. An `async def` one is a wait: the handler's
-- coroutine yields the request to the Python driver, which awaits the function on the event
-- loop and resumes the coroutine with its results (or its error, raised here).

local core, module_functions, module_values = ...
local kumo, internal, host, opaque = core.kumo, core.internal, core.host, core.opaque
local fail = core.fail
local type, tostring, setmetatable, pairs, select = type, tostring, setmetatable, pairs, select
local rawequal = rawequal
local pack, unpack = table.pack, table.unpack
local string_find, string_sub, string_match = string.find, string.sub, string.match
local string_gsub, string_char, utf8_char, utf8_len = string.gsub, string.char, utf8.char, utf8.len
local math_type, tonumber = math.type, tonumber

-- lupa hands Lua strings to Python as UTF-8 text and fails on any other bytes; a string
-- argument that is not UTF-8 crosses as a table standing for its bytes (each byte as the
-- code point of the same number, which convert.to_python turns back into `bytes`)
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

-- results of a host call or of a wait: `true, values...` or `false, message`; `name`: the
-- function that was called
local function results_of(results, name)
  if not results[1] then
    fail(results[2], name)
  end
  return unpack(results, 2, results.n)
end

-- `module:name` names a function of a module of its own (`redis:open`), else one under kumo
local function split(path)
  local module, name = string_match(path, '^([^:]+):(.+)$')
  if module == nil then
    return nil, path
  end
  return module, name
end

-- kumo.a.b.c = value, making the tables on the way; `module:a.b` goes into the table that
-- `require 'module'` returns (package.loaded[module], found before any file is searched)
local function install(path, value)
  local module, name = split(path)
  local t = kumo
  if module ~= nil then
    t = package.loaded[module]
    if t == nil then
      t = {}
      package.loaded[module] = t
    end
    path = name
  end
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

local function module_function(name, spec)
  local module, short_name = split(name)
  local what = (module or 'kumo') .. '.' .. short_name
  local short = string_match(name, '([%w_]+)$')
  if spec.async then
    return function(...)
      local source = spec.source and core.source_of() or nil
      return results_of(pack(core.await(what, 'call', name, source, binary_safe(...))), short)
    end
  end
  return function(...)
    local source = spec.source and core.source_of() or nil
    return results_of(pack(host.module_call(name, source, binary_safe(...))), short)
  end
end

for name, spec in pairs(module_functions) do
  install(name, module_function(name, spec))
end
for name, value in pairs(module_values) do
  install(name, value)
end

-- A Python object (policy.api.LuaObject) as Lua holds it: methods, indexing, length,
-- tostring, calls, pairs, ==, + and -, and the end of a <close> scope go to the object;
-- passed back to Python it is the object. `methods` is the set of its method names, `waits`
-- names the methods and hooks that are `async def`. A method's Lua function is made when it
-- is first looked up (an object with many methods costs nothing for those it never uses).
local releasers = setmetatable({}, { __mode = 'k' }) -- proxy -> its release function

function internal.make_object(target, name, methods, waits)
  local method_functions = {}
  local function live()
    if target == nil then
      fail(name .. ' can only be used during the event it was given to')
    end
    return target
  end
  local function method_function(method)
    local what = name .. ':' .. method
    if waits[method] then
      return function(_, ...)
        local results = pack(core.await(what, 'method', live(), method, binary_safe(...)))
        return results_of(results, method)
      end
    end
    return function(_, ...)
      return results_of(pack(host.object_method(live(), method, binary_safe(...))), method)
    end
  end
  -- (the metamethods call `hook` without a tail call, so that their frame stays between the
  -- hook and the policy's line)
  local function hook(which, ...)
    if waits['lua_' .. which] then
      return results_of(pack(core.await(name, 'hook', live(), which, binary_safe(...))))
    end
    return results_of(pack(host.object_hook(live(), which, binary_safe(...))))
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
      if methods[key] then
        method = method_function(key)
        method_functions[key] = method
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
  core.opaque[proxy] = target
  releasers[proxy] = function()
    target = nil
    core.opaque[proxy] = nil
  end
  return proxy
end

-- Let go of a proxy's object (its event has ended): Lua may keep the proxy, not the object.
function internal.release_object(proxy)
  local release = releasers[proxy]
  if release ~= nil then
    releasers[proxy] = nil
    release()
  end
end

------------------------------------------------------------------------------
-- io.popen: a command's output, read whole (lupa's Lua has no popen)
------------------------------------------------------------------------------

local Output = {}
Output.__index = Output
Output.__name = 'FILE*'

local function read_one(file, format)
  local data, pos = file.data, file.pos
  if math_type(format) == 'integer' then
    if pos > #data then
      return nil
    end
    file.pos = pos + format
    return string_sub(data, pos, pos + format - 1)
  end
  format = string_match(tostring(format), '^%*?(%a)')
  if format == 'a' then
    file.pos = #data + 1
    return string_sub(data, pos)
  end
  if pos > #data then
    return nil
  end
  if format == 'l' or format == 'L' then
    local newline = string_find(data, '\n', pos, true)
    local stop = newline or #data
    file.pos = stop + 1
    if format == 'l' and newline then
      return string_sub(data, pos, stop - 1)
    end
    return string_sub(data, pos, stop)
  end
  if format == 'n' then
    local text = string_match(data, '^%s*[-+]?[%x%.xXpPeE]+', pos)
    if text == nil then
      return nil
    end
    file.pos = pos + #text
    return tonumber(text)
  end
  fail("bad argument to 'read' (invalid format)")
end

function Output:read(...)
  if self.closed then
    fail('attempt to use a closed file')
  end
  local formats = pack(...)
  if formats.n == 0 then
    return read_one(self, 'l')
  end
  local out = {}
  for i = 1, formats.n do
    out[i] = read_one(self, formats[i])
    if out[i] == nil then
      return unpack(out, 1, i)
    end
  end
  return unpack(out, 1, formats.n)
end

function Output:lines(...)
  local formats = pack(...)
  return function()
    return self:read(unpack(formats, 1, formats.n))
  end
end

function Output:close()
  if self.closed then
    fail('attempt to use a closed file')
  end
  self.closed = true
  if self.how == 'exit' and self.code == 0 then
    return true, 'exit', 0
  end
  return nil, self.how, self.code
end

function Output:setvbuf()
  return true
end

function Output:flush()
  return self
end

function Output:write()
  return nil, 'io.popen: the command was opened for reading', 9
end

function io.popen(command, mode)
  if type(command) ~= 'string' then
    fail("bad argument #1 to 'popen' (string expected, got " .. type(command) .. ')')
  end
  if mode ~= nil and mode ~= 'r' then
    fail("io.popen: only mode 'r' (reading the output of a command) is supported, got "
      .. tostring(mode))
  end
  local data, how, code = results_of(pack(core.await('io.popen', 'popen', command)), 'popen')
  return setmetatable({ data = data, pos = 1, how = how, code = code }, Output)
end

return core
