-- policy-extras.policy_utils, as kumoclient ships it: the small utilities KumoMTA's helpers
-- and policies use (`require 'policy-extras.policy_utils'`). Written for kumoclient from the
-- public functions of KumoMTA's module; call them with a dot (`utils.merge_into(a, b)`).
--
-- equals(a, b, ignore_mt)        deep comparison (a metatable's __eq decides unless ignore_mt)
-- assert_eq(a, b, msg)            error unless equals(a, b); assert_ne the opposite
-- assert_matches(s, pattern, msg) error unless the regex (kumo.regex) matches s
-- merge_into(src, dest)           copy src's keys into dest; recursive_merge_into merges tables
-- table_contains(t, v), table_keys(t), table_is_empty(t)
-- load_json_or_toml_file(x)       a table as it is, a `.toml` file, else a JSON file
-- starts_with(s, prefix), ends_with(s, suffix)
-- split_ip_port(text)             '10.0.0.1:25' -> '10.0.0.1', '25'; '[::1]:25' -> '::1', '25'
-- dumps(value)                    a Lua-like text of a value, keys sorted (for debugging)

local kumo = require 'kumo'

local mod = {}

local function iterable(value)
  local kind = type(value)
  return kind == 'table' or kind == 'userdata'
end

function mod.equals(a, b, ignore_mt)
  if a == b then
    return true
  end
  if not iterable(a) or not iterable(b) then
    return false
  end
  if not ignore_mt then
    local mt = getmetatable(a)
    if type(mt) == 'table' and mt.__eq ~= nil then
      return a == b -- the type says how its values compare
    end
  end
  local seen = {}
  for key, value in pairs(a) do
    local other = b[key]
    if other == nil or not mod.equals(value, other, ignore_mt) then
      return false
    end
    seen[key] = true
  end
  for key in pairs(b) do
    if not seen[key] then
      return false
    end
  end
  return true
end

local function prefix(message)
  if message == nil then
    return ''
  end
  return tostring(message) .. '. '
end

local function show(value)
  local ok, text = pcall(kumo.json_encode, value)
  if ok then
    return text
  end
  return mod.dumps(value) or 'nil'
end

function mod.assert_eq(a, b, message)
  if not mod.equals(a, b) then
    error(prefix(message) .. 'expected\n' .. show(a) .. '\n == \n' .. show(b), 2)
  end
end

function mod.assert_ne(a, b, message)
  if mod.equals(a, b) then
    error(prefix(message) .. 'expected\n' .. show(a) .. '\n != \n' .. show(b), 2)
  end
end

function mod.assert_matches(text, pattern, message)
  if kumo.regex == nil or kumo.regex.compile == nil then
    error('policy_utils.assert_matches needs kumo.regex', 2)
  end
  if not kumo.regex.compile(pattern):is_match(text) then
    error(
      prefix(message) .. 'expected\n "' .. tostring(text) .. '"\n to match\n "' .. pattern .. '"',
      2
    )
  end
end

function mod.merge_into(src, dest)
  if src == nil then
    return
  end
  for key, value in pairs(src) do
    dest[key] = value
  end
end

function mod.recursive_merge_into(src, dest)
  if src == nil then
    return
  end
  for key, value in pairs(src) do
    local current = dest[key]
    if type(value) == 'table' and current then
      mod.recursive_merge_into(value, current)
    else
      dest[key] = value
    end
  end
end

function mod.table_contains(tbl, wanted)
  if wanted == nil then
    return false
  end
  for _, value in pairs(tbl) do
    if value == wanted then
      return true
    end
  end
  return false
end

function mod.table_keys(tbl)
  local keys = {}
  for key in pairs(tbl) do
    keys[#keys + 1] = key
  end
  return keys
end

function mod.table_is_empty(tbl)
  return next(tbl) == nil
end

function mod.load_json_or_toml_file(source)
  if type(source) == 'table' then
    return source -- data given inline
  end
  if mod.ends_with(source, '.toml') then
    return kumo.toml_load(source)
  end
  return kumo.json_load(source)
end

function mod.starts_with(text, start)
  return text:sub(1, #start) == start
end

function mod.ends_with(text, suffix)
  return suffix == '' or text:sub(-#suffix) == suffix
end

function mod.split_ip_port(text)
  local host, port = text:match('^(.*):(%d+)$')
  if host == nil then
    return nil
  end
  local bare = host:match('^%[(.*)%]$')
  return bare or host, port
end

-- sort keys of different types: numbers first, then by text
local function before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return ta == 'number' or (tb ~= 'number' and ta < tb)
  end
  if ta == 'number' or ta == 'string' then
    return a < b
  end
  return tostring(a) < tostring(b)
end

local function dump(value, indent, open)
  local kind = type(value)
  if kind == 'number' or kind == 'boolean' then
    return tostring(value)
  end
  if kind ~= 'table' then
    return string.format('%q', tostring(value))
  end
  local mt = getmetatable(value)
  if type(mt) == 'table' and mt.__tostring ~= nil then
    return tostring(value)
  end
  if open[value] then
    return '[recursive node]'
  end
  open[value] = true
  local keys = mod.table_keys(value)
  table.sort(keys, before)
  local pad = string.rep(' ', indent)
  local lines = {}
  for i, key in ipairs(keys) do
    local shown = type(key) == 'number' and tostring(key) or string.format('%q', tostring(key))
    lines[i] = pad .. '[' .. shown .. '] = ' .. dump(value[key], indent + 2, open)
  end
  open[value] = nil
  if #lines == 0 then
    return '{}'
  end
  return '{\n' .. table.concat(lines, ',\n') .. '\n' .. string.rep(' ', indent - 2) .. '}'
end

function mod.dumps(value)
  if value == nil then
    return nil
  end
  return dump(value, 2, {})
end

return mod
