-- Events: `kumo.on`, the dispatcher that runs every handler call as a coroutine, the
-- registrars and `kumo.traceback`.
--
-- Handler calls run in worker coroutines that the Python driver resumes (lupa's coroutine
-- API: Python must never call into Lua while the main Lua thread is inside a resume). A
-- worker, given a job, yields either a wait (`settings.wait_marker`, request...: Python serves
-- the request and resumes it with `ok, results...`) or the job's answer:
--   'none'                              no handler
--   'ok', where, value1, value2         the result (nil values when none was returned)
--   'error', where, message, traceback  the handler failed (or was aborted)
--   'reject', where, code, text, mode   the handler called kumo.reject (mode 'If421') or
--                                       kumo.disconnect
-- and then waits for its next job. `where` is the file:line of the handler's `kumo.on`. Each
-- worker has one limit state (sandbox.lua), reset for each job.

local core = ...
local kumo, internal, host, raw = core.kumo, core.internal, core.host, core.raw
local fail, safe_tostring = core.fail, core.safe_tostring
local type, tostring, rawget, pairs = type, tostring, rawget, pairs
local pack, unpack, setmetatable = table.pack, table.unpack, setmetatable
local raw_xpcall, raw_create, raw_resume = raw.xpcall, raw.create, raw.resume
local raw_status, raw_yield = raw.status, raw.yield
local coroutine_close = coroutine.close

local multi = core.settings.multi_events
local handlers = {} -- event name -> list of { fn =, where = }
local registrars = {} -- event name -> list of call stacks ("src:line" strings)

------------------------------------------------------------------------------
-- kumo.on
------------------------------------------------------------------------------

function kumo.on(name, fn)
  local current_event = core.current_event
  if current_event ~= nil and current_event ~= 'main' then
    fail("kumo.on('" .. tostring(name) .. "', ...) called from within the handler of '"
      .. current_event .. "': register event handlers when the policy is loaded, at the top "
      .. 'level of the policy file or of a module it requires')
  end
  if type(name) ~= 'string' then
    fail('kumo.on: the event name must be a string, got ' .. type(name))
  end
  if type(fn) ~= 'function' then
    fail('kumo.on(' .. name .. '): the handler must be a function, got ' .. type(fn))
  end
  local list = handlers[name]
  if list ~= nil and not multi[name] then
    fail(name .. ' event already has a handler defined at ' .. list[1].where)
  end
  if list == nil then
    list = {}
    handlers[name] = list
  end
  local stacks = registrars[name]
  if stacks == nil then
    stacks = {}
    registrars[name] = stacks
  end
  stacks[#stacks + 1] = core.stack(2)
  list[#list + 1] = { fn = fn, where = core.where(2) or '?' }
end

function kumo.get_event_registrars(name)
  local stacks = registrars[name]
  if stacks == nil then
    return nil
  end
  local copy = {}
  for i = 1, #stacks do
    copy[i] = { unpack(stacks[i]) }
  end
  return copy
end

function kumo.validation_failed()
  host.validation_failed()
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
-- calling handlers
------------------------------------------------------------------------------

-- Rejections are tables recorded here; no comparison that a policy could intercept.
local rejections = setmetatable({}, { __mode = 'k' })
core.rejections = rejections
local failures = setmetatable({}, { __mode = 'k' })

local function on_error(err)
  if rejections[err] or core.is_abort(err) then
    return err
  end
  local message = core.relocate(safe_tostring(err))
  local failure = { message = message, traceback = core.traceback(message, 2) }
  failures[failure] = true
  return failure
end
core.on_error = on_error

local function failure(err, where)
  if rejections[err] then
    return 'reject', where, rawget(err, 'code'), rawget(err, 'text'), rawget(err, 'disconnect')
  end
  if core.is_abort(err) then
    return 'error', where, tostring(err), nil
  end
  if core.is_memory_error(err) then
    return 'error', where, (where and where .. ': ' or '') .. core.memory_message(), nil
  end
  if failures[err] then
    return 'error', where, rawget(err, 'message'), rawget(err, 'traceback')
  end
  return 'error', where, safe_tostring(err), nil -- an error inside the error handler
end
core.failure = failure

-- Calls the handlers of `name`: a single handler's results; for an event that takes several,
-- in order until one returns a value (an explicit nil counts: zero values passes on).
local function call_handlers(state, name, ...)
  local list = handlers[name]
  if list == nil then
    return 'none'
  end
  if multi[name] then
    for i = 1, #list do
      local h = list[i]
      state.handler = h.fn
      local results = pack(raw_xpcall(h.fn, on_error, ...))
      if not results[1] then
        return failure(results[2], h.where)
      end
      if results.n > 1 then
        return 'ok', h.where, results[2], results[3]
      end
    end
    return 'ok', list[#list].where
  end
  local h = list[1]
  state.handler = h.fn
  local ok, first, second = raw_xpcall(h.fn, on_error, ...)
  if ok then
    return 'ok', h.where, first, second
  end
  return failure(first, h.where)
end

-- an event fired from inside a handler (kumo.invoke_*): same rules, same coroutine
function core.dispatch(name, ...)
  local outer = core.current_event
  core.current_event = name
  local results = pack(call_handlers(core.current, name, ...))
  core.current_event = outer
  return unpack(results, 1, results.n)
end

------------------------------------------------------------------------------
-- the driver's side: worker coroutines
------------------------------------------------------------------------------

-- Run the policy file as a handler call is run.
local function run_policy(path)
  local chunk, err = raw.load_file(path, 't')
  if chunk == nil then
    err = safe_tostring(err)
    local shown = err:match('^%.%.%.(.-):%d+:')
    if shown ~= nil and path:sub(-#shown) == shown then -- Lua shortened the name: in full
      err = path .. err:sub(#shown + 4)
    end
    return 'error', nil, err, nil
  end
  local ok, result = raw_xpcall(chunk, on_error)
  if not ok then
    return failure(result, nil)
  end
  return 'ok', nil
end

-- A worker takes jobs from the driver, one at a time: ('fire', event, args...),
-- ('task', event, args...) or ('policy', path); it yields each answer, and waits in between.
local function worker(state)
  -- the job, under the dispatcher's own xpcall: an abort raised while the dispatcher handles
  -- a handler's result still ends in an answer
  local enter = core.enter
  local function run(kind, name, ...)
    if kind == 'fire' then -- the common job (the rewrite hook's), in few instructions: each
      state.used, state.abort, state.per_slice = 0, nil, false -- one runs under the count hook
      state.handler, state.origin, state.event = nil, nil, name
      enter(state)
      return call_handlers(state, name, ...)
    end
    state.used, state.abort, state.per_slice = 0, nil, kind == 'task'
    state.handler, state.origin = nil, kind == 'policy' and name or nil
    state.event = kind ~= 'policy' and name or nil
    enter(state)
    if kind == 'policy' then
      return run_policy(name)
    end
    return call_handlers(state, name, ...)
  end
  local function leave(ok, ...)
    core.current, core.current_event = nil, nil
    if ok then
      return ...
    end
    return failure((...), nil)
  end
  -- yield the answer, take the next job (a proper tail call: the stack does not grow)
  local function serve(...)
    return serve(leave(raw_xpcall(run, on_error, raw_yield(...))))
  end
  core.unlimited[leave] = true -- the hook never aborts the worker's own bookkeeping
  core.unlimited[serve] = true
  return serve('ready')
end

-- A new worker, started (suspended, waiting for its first job), with its limit.
function internal.new_worker()
  local state = core.new_limit()
  local co = raw_create(worker)
  core.workers[co] = true
  core.limit(co)
  raw_resume(co, state)
  return co
end

-- A worker that will not be resumed (its task was cancelled while it waited): close it.
function internal.abandon(co)
  if raw_status(co) == 'suspended' then
    raw.pcall(coroutine_close, co)
  end
end

------------------------------------------------------------------------------
-- kumo.traceback
------------------------------------------------------------------------------

-- kumo.traceback(level): the frames from `level` (1: the caller) upward, internal ones left
-- out, as KumoMTA describes them.
function kumo.traceback(level)
  if level ~= nil and math.type(level) ~= 'integer' then
    fail('kumo.traceback: level must be an integer, got ' .. type(level))
  end
  local frames = core.frames((level or 1) + 1) -- (not a tail call: this frame counts)
  return frames
end
