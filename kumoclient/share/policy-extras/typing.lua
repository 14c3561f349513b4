-- policy-extras.typing, as kumoclient ships it: checked data types for the configuration
-- tables of helpers and policies (`require 'policy-extras.typing'`). Written for kumoclient
-- from the public functions of KumoMTA's module.
--
-- Types: the scalars `number`, `string`, `boolean`, `Function`, `any`; `enum(name, v1, ...)`;
-- `list(T)`; `map(K, V)`; `option(T)` (nil allowed); `default(T, value)`; `variant(T1, T2,
-- ...)`; `record(name, fields)` where `fields` maps each field name to its type, and the
-- special field `_dynamic = function(key, value) return ok, err end` admits other keys (ok
-- false with no err: an unknown key). Every type is callable: `Point { x = 1, y = 2 }` builds
-- a checked value (a plain table given where a record, list or map is expected is converted);
-- `T:validate_value(v)` answers `true, value` or `false, err`.
--
-- A failure is an error whose text names the caller's file:line and what is wrong, one line
-- per level of nesting: "policy.lua:12: Point: invalid value for field 'y'" followed by
-- "policy.lua:12: Expected 'number', got 'boolean' true".
-- extract_deserialize_error(err) pulls X out of "deserialize error: X, while processing ...".

local kumo = require 'kumo'

local mod = {}

------------------------------------------------------------------------------
-- errors
------------------------------------------------------------------------------

local function show(value)
  if type(value) == 'string' then
    return "'" .. value .. "'"
  end
  if type(value) == 'table' then
    local ok, text = pcall(kumo.json_encode_pretty, value)
    if ok then
      return text
    end
  end
  return tostring(value)
end

local own_source = nil -- this file, as kumo.traceback names it

-- file:line of the nearest Lua code outside this module
local function caller()
  local frames = kumo.traceback(1)
  own_source = own_source or (frames[1] and frames[1].source)
  for _, frame in ipairs(frames) do
    if frame.what ~= 'C' and frame.source ~= own_source then
      return tostring(frame.short_src) .. ':' .. tostring(frame.curr_line or 0)
    end
  end
  return '?'
end

local TypeError = {}
TypeError.__index = TypeError
TypeError.__tostring = function(err)
  local lines = {}
  local current = err
  while current ~= nil do
    local where = current.where
    lines[#lines + 1] = where and (where .. ': ' .. current.message) or current.message
    current = current.cause
  end
  return table.concat(lines, '\n')
end

-- `cause`: the error (a TypeError, or anything else) this one explains
local function type_error(message, cause)
  if cause ~= nil and getmetatable(cause) ~= TypeError then
    cause = setmetatable({ message = tostring(cause) }, TypeError) -- a text that has its place
  end
  return setmetatable({ message = message, cause = cause, where = caller() }, TypeError)
end

local function raise(message, cause)
  error(tostring(type_error(message, cause)), 0)
end

------------------------------------------------------------------------------
-- types
------------------------------------------------------------------------------

-- A type: `name`, `validate_value`; calling it checks (and converts) a value.
local function new_type(spec)
  return setmetatable(spec, {
    __call = function(ty, value)
      return ty:construct(value)
    end,
  })
end

local function checked_scalar(ty, value)
  local ok, result = ty:validate_value(value)
  if not ok then
    error(tostring(result), 0)
  end
  return result
end

local function scalar(lua_type)
  return new_type({
    name = lua_type,
    construct = checked_scalar,
    validate_value = function(_, value)
      if type(value) ~= lua_type then
        return false,
          type_error(
            "Expected '" .. lua_type .. "', got '" .. type(value) .. "' " .. show(value)
          )
      end
      return true, value
    end,
  })
end

mod.number = scalar('number')
mod.string = scalar('string')
mod.boolean = scalar('boolean')
mod.Function = scalar('function')

mod.any = new_type({
  name = 'Any',
  construct = function(_, value)
    return value
  end,
  validate_value = function(_, value)
    return true, value
  end,
})

function mod.enum(name, ...)
  local variants = { ... }
  local valid = {}
  for _, variant in ipairs(variants) do
    valid[variant] = true
  end
  return new_type({
    name = name,
    variants = variants,
    construct = checked_scalar,
    validate_value = function(_, value)
      if valid[value] then
        return true, value
      end
      local shown = {}
      for i, variant in ipairs(variants) do
        shown[i] = show(variant)
      end
      return false,
        type_error(
          "Unexpected '" .. name .. "' value " .. show(value) .. ', expected one of '
            .. table.concat(shown, ', ')
        )
    end,
  })
end

function mod.option(target)
  return new_type({
    name = 'option<' .. target.name .. '>',
    is_optional = true,
    target = target,
    construct = checked_scalar,
    validate_value = function(_, value)
      if value == nil then
        return true, nil
      end
      return target:validate_value(value)
    end,
  })
end

function mod.default(target, value)
  return new_type({
    name = target.name,
    default_value = value,
    target = target,
    construct = checked_scalar,
    validate_value = function(_, candidate)
      if candidate == nil then
        return true, value
      end
      return target:validate_value(candidate)
    end,
  })
end

function mod.variant(...)
  local variants = { ... }
  if #variants < 2 then
    error('typing.variant: give two variants or more, got ' .. #variants, 2)
  end
  local names = {}
  for i, variant in ipairs(variants) do
    names[i] = variant.name
  end
  local name = 'variant<' .. table.concat(names, ',') .. '>'
  return new_type({
    name = name,
    variants = variants,
    construct = checked_scalar,
    validate_value = function(_, value)
      local failures = {}
      for _, variant in ipairs(variants) do
        local ok, result = variant:validate_value(value)
        if ok then
          return true, result
        end
        failures[#failures + 1] = tostring(result)
      end
      return false,
        type_error(
          "Unexpected '" .. name .. "' value " .. show(value)
            .. '. Failed to match any allowed variant: ' .. table.concat(failures, '. ')
        )
    end,
  })
end

-- a value of a structured type `ty`: one already made, or a plain table converted
local function validate_structured(ty, value)
  local mt = getmetatable(value)
  if mt == ty then
    return true, value
  end
  if mt == nil and type(value) == 'table' then
    local ok, made = pcall(ty.construct, ty, value)
    if ok then
      return true, made
    end
    return false,
      type_error(
        "Expected value of type '" .. ty.name .. "' and encountered an error during coercion",
        made
      )
  end
  if type(mt) == 'table' and mt.name ~= nil then
    return false,
      type_error(
        "Expected value of type '" .. ty.name .. "' but got type '" .. tostring(mt.name)
          .. "' with value " .. show(value)
      )
  end
  return false,
    type_error(
      "Expected value of type '" .. ty.name .. "' but got type '" .. type(value) .. "' "
        .. show(value)
    )
end

local function structured(ty)
  ty.validate_value = validate_structured
  return new_type(ty)
end

function mod.record(name, fields)
  local ty = { name = name, fields = fields }
  local dynamic = fields._dynamic

  ty.__index = function(obj, key)
    if fields[key] == nil and dynamic == nil then
      raise(name .. ": attempt to read unknown field '" .. tostring(key) .. "'")
    end
    return nil
  end

  ty.__newindex = function(obj, key, value)
    local field = fields[key]
    if field == nil or key == '_dynamic' then
      if dynamic ~= nil then
        local ok, err = dynamic(key, value)
        if ok then
          rawset(obj, key, value)
          return
        end
        if err ~= nil then
          raise(name .. ": invalid value for field '" .. tostring(key) .. "'", err)
        end
      end
      raise(name .. ": unknown field '" .. tostring(key) .. "'")
    end
    local ok, result = field:validate_value(value)
    if not ok then
      raise(name .. ": invalid value for field '" .. tostring(key) .. "'", result)
    end
    rawset(obj, key, result)
  end

  function ty.construct(_, params)
    local obj = setmetatable({}, ty)
    for key, value in pairs(params or {}) do
      obj[key] = value
    end
    for key, field in pairs(fields) do
      if type(field) == 'table' and rawget(obj, key) == nil then
        if field.default_value ~= nil then
          obj[key] = field.default_value
        elseif not field.is_optional then
          raise(
            name .. ": missing value for field '" .. key .. "' of type '"
              .. tostring(field.name) .. "'"
          )
        end
      end
    end
    return obj
  end

  return structured(ty)
end

function mod.list(value_type)
  local ty = { name = 'list<' .. value_type.name .. '>', value_type = value_type }

  ty.__newindex = function(obj, index, value)
    if math.type(index) ~= 'integer' then
      raise(ty.name .. ": invalid index '" .. show(index) .. "' list")
    end
    local ok, result = value_type:validate_value(value)
    if not ok then
      raise(ty.name .. ': invalid value for idx ' .. index, result)
    end
    rawset(obj, index, result)
  end

  function ty.construct(_, params)
    local obj = setmetatable({}, ty)
    for i, value in ipairs(params or {}) do
      obj[i] = value
    end
    return obj
  end

  return structured(ty)
end

function mod.map(key_type, value_type)
  local ty = {
    name = 'map<' .. key_type.name .. ',' .. value_type.name .. '>',
    key_type = key_type,
    value_type = value_type,
  }

  ty.__newindex = function(obj, key, value)
    local key_ok, checked_key = key_type:validate_value(key)
    if not key_ok then
      raise(ty.name .. ': invalid key ' .. show(key), checked_key)
    end
    local ok, result = value_type:validate_value(value)
    if not ok then
      raise(ty.name .. ': invalid value for key ' .. show(key), result)
    end
    rawset(obj, checked_key, result)
  end

  function ty.construct(_, params)
    local obj = setmetatable({}, ty)
    for key, value in pairs(params or {}) do
      obj[key] = value
    end
    return obj
  end

  return structured(ty)
end

function mod.extract_deserialize_error(err)
  local text = tostring(err)
  return text:match('deserialize error: (.*), while processing') or text
end

return mod
