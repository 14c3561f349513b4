-- The sandbox of a policy's Lua state: what policy code may load, how errors name the policy's
-- own file:line, and the limits of a handler call (instructions, memory, interruption).
--
-- Loaded first, with `raw_host` (a table of Python callables) and `settings`. It captures what
-- the other chunks need (`debug`, the raw `pcall`/`coroutine` functions) before policy code
-- exists, removes `debug` and `python` from the globals, and returns `core`: the table the
-- other internal chunks (waits.lua, loading.lua, dispatch.lua, kumo.lua, bridge.lua) share,
-- loaded in that order. Internal chunks are named
-- `=kumoclient-<name>`; their frames never appear in a location shown to the policy.

local raw_host, settings = ...

local getinfo, raw_traceback = debug.getinfo, debug.traceback
local raw_sethook, raw_gethook = debug.sethook, debug.gethook
local error, type, tostring, rawget, rawset = error, type, tostring, rawget, rawset
local raw_pcall, raw_xpcall, setmetatable = pcall, xpcall, setmetatable
local pack, unpack, concat = table.pack, table.unpack, table.concat
local string_sub, string_match = string.sub, string.match
local string_find = string.find
local raw_create, raw_resume, raw_status = coroutine.create, coroutine.resume, coroutine.status
local raw_yield, raw_isyieldable, raw_running = coroutine.yield, coroutine.isyieldable, coroutine.running
local raw_load_file, raw_io_open, loaded = loadfile, io.open, package.loaded

local core = { kumo = {}, internal = {}, settings = settings }

-- tostring that cannot raise (a policy may give values a __tostring that errors)
local function safe_tostring(value)
  local ok, text = raw_pcall(tostring, value)
  if ok and type(text) == 'string' then
    return text
  end
  return '(' .. type(value) .. ')'
end
core.safe_tostring = safe_tostring

-- Every host callable is called through pcall: if lupa itself fails (say, on a string that is
-- not UTF-8) the error becomes a string here instead of reaching Lua as a Python object.
local function passed(ok, ...)
  if ok then
    return ...
  end
  return false, safe_tostring((...))
end

local function guarded(fn)
  return function(...)
    return passed(raw_pcall(fn, ...))
  end
end
core.guarded = guarded

local host = {}
for name, fn in pairs(raw_host) do
  host[name] = guarded(fn)
end
core.host = host

python = nil
loaded.python = nil
debug = nil
loaded.debug = nil

------------------------------------------------------------------------------
-- locations
------------------------------------------------------------------------------

local function is_internal(source)
  return string_sub(source, 1, 12) == '=kumoclient-'
end

local function display_source(info)
  local src = info.source
  local first = string_sub(src, 1, 1)
  if first == '@' or first == '=' then
    return string_sub(src, 2)
  end
  return info.short_src
end

-- `file:line` of the nearest policy (not internal, not C) frame, starting `level` frames above
-- the caller of `where`; nil when there is none.
function core.where(level)
  level = level + 1
  local info = getinfo(level, 'Sl')
  while info ~= nil do
    if info.what ~= 'C' and not is_internal(info.source) then
      return display_source(info) .. ':' .. tostring(info.currentline)
    end
    level = level + 1
    info = getinfo(level, 'Sl')
  end
  return nil
end

-- the source (`@path`) of the nearest policy frame above the caller; the bundled helpers
-- (kumoclient/share) are passed over: a relative path they are given is the policy's
local share_source = '@' .. settings.share_dir .. '/'
function core.source_of()
  local level = 2
  local info = getinfo(level, 'S')
  while info ~= nil do
    local source = info.source
    if
      info.what ~= 'C'
      and not is_internal(source)
      and string_sub(source, 1, #share_source) ~= share_source
    then
      return source
    end
    level = level + 1
    info = getinfo(level, 'S')
  end
  return nil
end

-- "src:line" of each policy frame from `level` frames above the caller (kumo.on's registrars)
function core.stack(level)
  local out = {}
  level = level + 1
  local info = getinfo(level, 'Sl')
  while info ~= nil do
    if info.what ~= 'C' and not is_internal(info.source) then
      out[#out + 1] = info.short_src .. ':' .. tostring(info.currentline)
    end
    level = level + 1
    info = getinfo(level, 'Sl')
  end
  return out
end

-- The frames from `level` frames above the caller, internal ones left out (kumo.traceback).
function core.frames(level)
  local out = {}
  level = level + 1
  local info = getinfo(level, 'nSlt')
  while info ~= nil do
    if not is_internal(info.source) then
      out[#out + 1] = {
        event = 'Unknown',
        name = info.name,
        name_what = info.namewhat ~= '' and info.namewhat or nil,
        source = info.source,
        short_src = info.short_src,
        line_defined = info.linedefined >= 0 and info.linedefined or nil,
        last_line_defined = info.lastlinedefined >= 0 and info.lastlinedefined or nil,
        what = info.what,
        curr_line = info.currentline >= 0 and info.currentline or nil,
        is_tail_call = info.istailcall,
      }
    end
    level = level + 1
    info = getinfo(level, 'nSlt')
  end
  return out
end

-- Where a handler that returned `kumo.something(...)` called it: a tail call leaves no frame of
-- the handler, so its lines are searched for `name` (the first line that names it, else the
-- line the handler starts on).
local function tail_caller(name)
  local state = core.current
  local handler = state and state.handler
  if handler == nil then
    return nil
  end
  local info = getinfo(handler, 'S')
  local line = info.linedefined
  if name ~= nil and string_sub(info.source, 1, 1) == '@' then
    local file = raw_io_open(string_sub(info.source, 2), 'r')
    if file ~= nil then
      local number = 0
      for text in file:lines() do
        number = number + 1
        if number > info.lastlinedefined then
          break
        end
        if number >= info.linedefined and string_find(text, name, 1, true) then
          line = number
          break
        end
      end
      file:close()
    end
  end
  return display_source(info) .. ':' .. tostring(line)
end

-- raise `message` as coming from the nearest policy line; `name`: the kumo function that
-- fails (by default the name that starts the message, `make_queue_config: ...`)
function core.fail(message, name)
  local where = core.where(2)
  if where == nil then
    name = name or string_match(message, '^[%w_.]-([%w_]+): ')
    where = tail_caller(name)
  end
  if where ~= nil then
    error(where .. ': ' .. message, 0)
  end
  error(message, 0)
end
local fail = core.fail

-- An error message positioned in an internal chunk is re-positioned at the nearest policy line
-- (call while the stack of the error is still there: from a message handler).
-- Lua shortens a long file name in a message to its last 60 characters (`...cy/policy.lua:3:`):
-- the full name of the frame it stands for is put back.
local function lengthen(err)
  if string_sub(err, 1, 3) ~= '...' then
    return err
  end
  for level = 3, 12 do
    local info = getinfo(level, 'S')
    if info == nil then
      break
    end
    local short = info.short_src
    if string_sub(short, 1, 3) == '...' and string_sub(err, 1, #short + 1) == short .. ':' then
      return display_source(info) .. string_sub(err, #short + 1)
    end
  end
  return err
end

local function relocate(err)
  if type(err) == 'string' then
    local rest = string_match(err, '^kumoclient%-%a+:%d+: (.*)$')
    if rest ~= nil then
      local where = core.where(2)
      if where ~= nil then
        return where .. ': ' .. rest
      end
    end
    return lengthen(err)
  end
  return err
end
core.relocate = relocate

-- a Lua traceback without the frames of internal chunks
function core.traceback(message, level)
  local text = raw_traceback(message, level + 1)
  local lines = {}
  for line in text:gmatch('[^\n]+') do
    if not string_find(line, 'kumoclient-', 1, true) then
      lines[#lines + 1] = line
    end
  end
  return concat(lines, '\n')
end

------------------------------------------------------------------------------
-- limits: instructions, memory, interruption
------------------------------------------------------------------------------

local MEMORY_ERROR = 'not enough memory'
local budget, quantum = settings.max_instructions, settings.quantum
local interrupted = raw_host.interrupted

local Abort = { __metatable = false }
Abort.__tostring = function(a)
  return a.message
end
local aborts = setmetatable({}, { __mode = 'k' })

local function new_abort(message)
  local abort = setmetatable({ message = message }, Abort)
  aborts[abort] = true
  return abort
end

-- The limit of a handler call: its count of instructions, its abort once raised. With
-- `per_slice` the count starts again after each wait (a spawned task that waits between its
-- turns). The dispatcher makes it `core.current` while the call runs.
function core.new_limit()
  return { used = 0, per_slice = false, abort = nil }
end

-- The count hook, every `quantum` instructions of a worker or of a coroutine the policy made:
-- it counts for the call that runs now (none: the worker's own bookkeeping, not counted).
-- where the limit was met: the policy line running, else the handler (or the policy file)
local function running_place(state)
  local where = core.where(3)
  if where ~= nil then
    return where
  end
  if state.handler ~= nil then
    local info = getinfo(state.handler, 'S')
    return display_source(info) .. ':' .. tostring(info.linedefined)
  end
  return state.origin or '?'
end

local unlimited = setmetatable({}, { __mode = 'k' })
core.unlimited = unlimited

local function hook()
  local state = core.current
  if state == nil or unlimited[getinfo(2, 'f').func] then
    return
  end
  if state.abort ~= nil then
    error(state.abort, 0) -- swallowed once (by an error handler that failed): again
  end
  state.used = state.used + quantum
  local reason
  if interrupted() then
    reason = 'handler interrupted: kumoclient is stopping'
  elseif state.used >= budget then
    reason = 'instruction limit exceeded (' .. tostring(budget)
      .. ' instructions; KUMOCLIENT_LUA_MAX_INSTRUCTIONS)'
  end
  if reason ~= nil then
    state.abort = new_abort(running_place(state) .. ': ' .. reason)
    error(state.abort, 0)
  end
end

function core.limit(co)
  raw_sethook(co, hook, '', quantum)
end

function core.is_abort(err)
  return aborts[err] == true
end

function core.is_memory_error(err)
  return err == MEMORY_ERROR
end

-- The running handler call's limit state (set by the dispatcher at each resume).
core.current = nil

-- pcall and friends hand back every error except an abort, which goes on up to the dispatcher.
local function rethrow(ok, ...)
  if not ok then
    local err = ...
    local state = core.current
    if aborts[err] then
      error(err, 0)
    elseif err == MEMORY_ERROR and state ~= nil then
      state.abort = new_abort((core.where(2) or '?') .. ': ' .. core.memory_message())
      error(state.abort, 0)
    elseif state ~= nil and state.abort ~= nil then
      error(state.abort, 0)
    end
  end
  return ok, ...
end

function core.memory_message()
  return 'Lua memory limit exceeded (' .. tostring(settings.max_memory)
    .. ' bytes; KUMOCLIENT_LUA_MAX_MEMORY)'
end

function pcall(fn, ...)
  return rethrow(raw_xpcall(fn, relocate, ...))
end

function xpcall(fn, handler, ...)
  if type(handler) ~= 'function' then
    fail("bad argument #2 to 'xpcall' (function expected, got " .. type(handler) .. ')')
  end
  local function handle(err)
    if aborts[err] then
      return err
    end
    return handler(relocate(err))
  end
  return rethrow(raw_xpcall(fn, handle, ...))
end

core.raw = {
  gethook = raw_gethook,
  sethook = raw_sethook,
  isyieldable = raw_isyieldable,
  running = raw_running,
  pcall = raw_pcall,
  xpcall = raw_xpcall,
  create = raw_create,
  resume = raw_resume,
  status = raw_status,
  yield = raw_yield,
  load_file = raw_load_file,
  rawget = rawget,
}

return core
