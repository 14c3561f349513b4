-- Waiting, and the policy's own coroutines: a handler call waits by yielding (settings.
-- wait_marker, request...) to the Python driver; a coroutine the policy creates carries the
-- limit of the call that created it, and passes the waits of the code it runs up to the
-- driver (its resumer gets them back when they are served). An abort raised inside a policy
-- coroutine goes on up: `coroutine.resume` does not hand it back as a result.

local core = ...
local settings, fail, raw = core.settings, core.fail, core.raw
local error, rawset, setmetatable, pairs = error, rawset, setmetatable, pairs
local pack, unpack = table.pack, table.unpack
local raw_create, raw_resume, raw_status, raw_yield = raw.create, raw.resume, raw.status, raw.yield
local raw_gethook, raw_sethook = raw.gethook, raw.sethook
local raw_isyieldable, raw_running = raw.isyieldable, raw.running
local aborts = core.is_abort

-- What a handler call yields to the Python driver when it waits: a string only Python knows.
local WAIT = settings.wait_marker
core.workers = setmetatable({}, { __mode = 'k' }) -- the dispatcher's coroutines

-- The global `_KUMO_CURRENT_EVENT` names the event of the handler that runs (or ran last, as
-- in KumoMTA, whose Lua states keep it); set only when it changes.
local published = nil
function core.publish(event)
  if event ~= published then
    published = event
    rawset(_G, '_KUMO_CURRENT_EVENT', event)
  end
end

-- The handler call that runs now: its limit state, its event (dispatch.lua sets them).
function core.enter(state)
  core.current = state
  core.current_event = state.event
  core.publish(state.event)
end

function core.leave()
  core.current = nil
  core.current_event = nil
end

-- Wait for Python: the driver serves `...` and resumes with `ok, results...`.
function core.await(what, ...)
  if not raw_isyieldable() then
    fail(what .. ' waits for I/O and cannot be called here (inside a function that Lua '
      .. 'calls from C, such as a table.sort comparator or a string.gsub callback)')
  end
  local state = core.current
  core.leave()
  local results = pack(raw_yield(WAIT, ...))
  if state ~= nil then
    core.enter(state)
    if state.per_slice then
      state.used = 0
    end
  end
  return unpack(results, 1, results.n)
end

local function pass_through(co, results)
  while true do
    if not results[1] then
      local err = results[2]
      if aborts(err) or (core.current ~= nil and core.current.abort ~= nil) then
        error(core.current and core.current.abort or err, 0)
      end
      return unpack(results, 1, results.n)
    end
    if results[2] ~= WAIT or raw_status(co) ~= 'suspended' then
      return unpack(results, 1, results.n)
    end
    -- the inner coroutine waits for Python: pass its request out, the answer back in
    results = pack(raw_resume(co, raw_yield(unpack(results, 2, results.n))))
  end
end

local policy_coroutine = {}
for name, fn in pairs(coroutine) do
  policy_coroutine[name] = fn
end

function policy_coroutine.create(fn)
  local co = raw_create(fn)
  local hook, mask, count = raw_gethook(raw_running())
  if hook ~= nil then
    raw_sethook(co, hook, mask, count)
  end
  return co
end

function policy_coroutine.resume(co, ...)
  return pass_through(co, pack(raw_resume(co, ...)))
end

function policy_coroutine.yield(...)
  if core.workers[raw_running()] then
    fail('coroutine.yield called outside a coroutine (in the body of an event handler)')
  end
  return raw_yield(...)
end

function policy_coroutine.wrap(fn)
  local co = policy_coroutine.create(fn)
  return function(...)
    local results = pack(policy_coroutine.resume(co, ...))
    if not results[1] then
      error(results[2], 0)
    end
    return unpack(results, 2, results.n)
  end
end

coroutine = policy_coroutine
package.loaded.coroutine = policy_coroutine
