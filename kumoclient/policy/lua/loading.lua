-- Loading code in a policy's Lua state: text chunks only (precompiled bytecode can break out
-- of the Lua VM; no C modules), `require` written in Lua (so a module's top-level code may
-- wait for I/O), and paths under /opt/kumomta/share/ that are not there read from kumoclient's
-- bundled share directory.

local core = ...
local settings, fail = core.settings, core.fail
local type, select, concat = type, select, table.concat
local string_sub, string_gsub = string.sub, string.gsub
local raw_load, raw_load_file, raw_io_open, raw_io_lines = load, loadfile, io.open, io.lines
local searchpath, searchers, loaded = package.searchpath, package.searchers, package.loaded

local OPT_SHARE = '/opt/kumomta/share/'
local share_replacement = string_gsub(settings.share_dir, '%%', '%%%%') .. '/'

-- a path under /opt/kumomta/share/ that is not there is read from the bundled share directory
local function share_path(path)
  if type(path) == 'string' and string_sub(path, 1, #OPT_SHARE) == OPT_SHARE then
    local file = raw_io_open(path, 'r')
    if file ~= nil then
      file:close()
      return path
    end
    return settings.share_dir .. string_sub(path, #OPT_SHARE)
  end
  return path
end
core.share_path = share_path

function load(...)
  local chunk, name, _, env = ...
  if select('#', ...) >= 4 then
    return raw_load(chunk, name, 't', env)
  end
  return raw_load(chunk, name, 't')
end

function loadfile(...)
  local path, _, env = ...
  if type(path) ~= 'string' then
    return nil, 'loadfile: a file name is required (standard input is not read)'
  end
  if select('#', ...) >= 3 then
    return raw_load_file(share_path(path), 't', env)
  end
  return raw_load_file(share_path(path), 't')
end

function dofile(path)
  if type(path) ~= 'string' then
    fail('dofile: a file name is required (standard input is not read)')
  end
  local chunk, err = raw_load_file(share_path(path), 't')
  if chunk == nil then
    fail(err)
  end
  return chunk()
end

function io.open(path, mode)
  if mode == nil or (type(mode) == 'string' and string_sub(mode, 1, 1) == 'r') then
    path = share_path(path)
  end
  return raw_io_open(path, mode)
end

function io.lines(path, ...)
  if path ~= nil then
    path = share_path(path)
  end
  return raw_io_lines(path, ...)
end

package.loadlib = nil
package.cpath = ''
package.path = settings.package_path
searchers[4] = nil
searchers[3] = nil

-- Lua's own file searcher would load precompiled chunks too: search, then load as text
searchers[2] = function(name)
  local path, err = searchpath(name, package.path)
  if path == nil then
    local mapped = string_gsub(package.path, OPT_SHARE, share_replacement)
    path = searchpath(name, mapped)
    if path == nil then
      return err
    end
  end
  local chunk, load_error = raw_load_file(path, 't')
  if chunk == nil then
    fail("error loading module '" .. name .. "' from file '" .. path .. "':\n\t" .. load_error)
  end
  return chunk, path
end

-- `require` in Lua, so that a module's top-level code may wait (call kumo functions that do I/O)
function require(name)
  if type(name) ~= 'string' then
    fail("bad argument #1 to 'require' (string expected, got " .. type(name) .. ')')
  end
  local value = loaded[name]
  if value ~= nil and value ~= false then
    return value
  end
  local messages = {}
  for i = 1, #searchers do
    local loader, extra = searchers[i](name)
    if type(loader) == 'function' then
      local result = loader(name, extra)
      if result ~= nil then
        loaded[name] = result
      elseif loaded[name] == nil then
        loaded[name] = true
      end
      return loaded[name], extra
    elseif type(loader) == 'string' then
      messages[#messages + 1] = loader
    end
  end
  fail("module '" .. name .. "' not found:\n\t" .. concat(messages, '\n\t'))
end

