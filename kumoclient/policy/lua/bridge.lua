-- The `kumo` functions and objects written in Python (kumoclient.policy.api), and io.popen.
--
-- A synchronous Python function is called directly. An `async def` one is a wait: the handler's
-- coroutine yields the request to the Python driver, which awaits the function on the event
-- loop and resumes the coroutine with its results (or its error, raised here).

local core, module_functions, module_values = ...
local kumo, internal, host = core.kumo, core.internal, core.host
local fail, checked = core.fail, core.checked
local type, tostring, setmetatable, pairs = type, tostring, setmetatable, pairs
local pack, unpack = table.pack, table.unpack
local string_find, string_sub, string_match = string.find, string.sub, string.match
local math_type, tonumber = math.type, tonumber

-- results of a host call or of a wait: `true, values...` or `false, message`; `name`: the
-- function that was called
local function results_of(results, name)
  if not results[1] then
    fail(results[2], name)
  end
  return unpack(results, 2, results.n)
end

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

local function module_function(name, spec)
  local what = 'kumo.' .. name
  local short = string_match(name, '([%w_]+)$')
  if spec.async then
    return function(...)
      local source = spec.source and core.source_of() or nil
      return results_of(pack(core.await(what, 'call', name, source, ...)), short)
    end
  end
  return function(...)
    local source = spec.source and core.source_of() or nil
    return results_of(pack(host.module_call(name, source, ...)), short)
  end
end

for name, spec in pairs(module_functions) do
  install(name, module_function(name, spec))
end
for name, value in pairs(module_values) do
  install(name, value)
end

-- A Python object (policy.api.LuaObject) as Lua holds it: methods, indexing, length,
-- tostring, calls and pairs go to the object; passed back to Python it is the object.
-- `waits` names the methods and hooks that are `async def`.
function internal.make_object(target, name, methods, waits)
  local method_functions = {}
  for i = 1, #methods do
    local method = methods[i]
    local what = name .. ':' .. method
    if waits[method] then
      method_functions[method] = function(_, ...)
        return results_of(pack(core.await(what, 'method', target, method, ...)), method)
      end
    else
      method_functions[method] = function(_, ...)
        return results_of(pack(host.object_method(target, method, ...)), method)
      end
    end
  end
  local function hook(which, ...)
    if waits['lua_' .. which] then
      return results_of(pack(core.await(name, 'hook', target, which, ...)))
    end
    return results_of(pack(host.object_hook(target, which, ...)))
  end
  local proxy = setmetatable({}, {
    __index = function(_, key)
      local method = method_functions[key]
      if method ~= nil then
        return method
      end
      return hook('index', key)
    end,
    __newindex = function(_, key, value)
      hook('newindex', key, value)
    end,
    __len = function()
      return hook('len')
    end,
    __tostring = function()
      return hook('tostring')
    end,
    __call = function(_, ...)
      return hook('call', ...)
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
  return proxy
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
