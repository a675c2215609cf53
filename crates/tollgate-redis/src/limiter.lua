#!lua name=tollgate_limiter_v3
--[[
Tollgate rate limits and budgets, one atomic function per operation. Loaded by
crates/tollgate-redis/src/lib.rs (FUNCTION LOAD REPLACE); the names carry the version
(`_v3`) so gateways of several versions can share one Redis during a rolling deploy: nodes still
on `tollgate_limiter_v2` (or `_v1`) keep calling their functions, which stay loaded next to this
library and use the same keys and the same state layout, so every node enforces one limit. A
change to the arguments or the reply makes a `_v4` library next to this one, never an edit in
place. (tests/fixtures holds the earlier versions as they shipped, for the mixed-version tests.)

v2 over v1: one call reserves for many independent requests (a gateway node batches the
requests waiting at that moment), and loads and saves each counter once per call however many
requests share it.
v3 over v2: the batch travels as two binary arguments read with `struct.unpack` instead of
five string arguments per reservation. Redis turned every argument into a Lua string and
`tonumber` read it back, and the per-request Lua tables of v2 fed the garbage collector: the
Lua around the `redis.call`s had become most of the server's time (about 40 us per request of
seven counters). Per-request state now lives in tables reused for the whole call.

Time: the server's clock (TIME, microseconds) for windows and slot expiry, so every node agrees.
Calendar periods are chosen by the caller (the period label is in the key) and arrive with the
seconds left in the period.

Kinds and their `param`:
  kind 'w' window:      param = period in microseconds; key is a hash {l = level, t = time, r = limit}
  kind 'c' calendar:    param = seconds until the period ends (-1 = never); key is an integer
  kind 'q' concurrency: param = maximum hold in microseconds; key is a zset member -> expiry,
                        one member per slot, unique per slot (token .. ':' .. counter)

tollgate_reserve_v3(KEYS = the distinct counters of the batch, ARGV = token, counters, requests)
  counters: per KEYS entry, little-endian: kind (1 byte: 'w', 'c' or 'q'), param (i64).
  requests: per request: n (i32), then n x (KEYS index (i32, 1-based), limit (i64), amount (i64)).
  (Mirrored by `wire::ReserveArgs` in src/wire.rs; keep both in step.)
  Requests are processed in order, each all-or-nothing on its own: every key of a request is
  checked against what the requests before it in this call took (a key listed twice in one
  request counts twice); a refused request changes nothing, an admitted one is charged. Each
  key's state is loaded at most once and saved at most once per call, after the last request.
  Reply (mirrored by `ReserveOutcome` in src/wire.rs): flat integers, per request in order
    admitted:  1, remaining_1, reset_us_1, remaining_2, reset_us_2, ...  (n pairs; reset -1 = none)
    refused:   0, index of the first limit hit (1-based within the request), retry_after_us
               (-1 = never)

tollgate_settle_v3(KEYS = one per adjustment, ARGV = token, then 3 per adjustment:
  kind, delta, param) -- same kinds and params; levels never go below zero; a negative
  concurrency delta -n pops n slots. The caller merges adjustments of one key first (so each
  key is loaded and saved once). Reply: 1. (Unchanged from v2: a settle call carries one
  adjustment per counter, not per request, so its arguments cost little.)
]]

local CONCURRENCY_RETRY_US = 1000000 -- mirrors tollgate_core::limits::CONCURRENCY_RETRY_AFTER
local ZADD_CHUNK = 500 -- members per ZADD: unpack() must stay well inside Lua's C stack

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- gcra::drain in tollgate-core
local function drain(level, elapsed, limit, period)
  if period <= 0 then return 0 end
  if elapsed < 0 then elapsed = 0 end
  local l = level - elapsed * limit / period
  if l < 0 then l = 0 end
  return l
end

local function load_window(key, now, period)
  local v = redis.call('HMGET', key, 'l', 't', 'r')
  if not v[1] then return {kind = 'w', level = 0, limit = 0, period = period, exists = false} end
  local limit = tonumber(v[3])
  return {
    kind = 'w', period = period, limit = limit, exists = true,
    level = drain(tonumber(v[1]), now - tonumber(v[2]), limit, period),
  }
end

local function save_window(key, st, now)
  redis.call('HSET', key, 'l', fmt(st.level), 't', fmt(now), 'r', st.limit)
  local empty_ms = 0
  if st.limit > 0 then empty_ms = math.ceil(st.level * st.period / st.limit / 1000) end
  redis.call('PEXPIRE', key, empty_ms + 1000)
end

-- One SET with EX instead of SET + EXPIRE: the same end state, one call fewer.
local function save_budget(key, used, ttl)
  if ttl > 0 then
    redis.call('SET', key, used, 'EX', ttl + 86400)
  else
    redis.call('SET', key, used)
  end
end

local function load(key, kind, now, param)
  if kind == 'w' then
    return load_window(key, now, param)
  elseif kind == 'c' then
    return {kind = 'c', used = tonumber(redis.call('GET', key) or '0'), ttl = param}
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    return {kind = 'q', held = redis.call('ZCARD', key), add = 0, hold = param}
  end
end

-- Adds `count` slots expiring at `expiry`, members `token:<first + 1>` onwards, in as few ZADDs
-- as the chunk size allows. Returns the last member number used.
local function add_slots(key, count, expiry, token, first)
  local n = first
  while count > 0 do
    local take = math.min(count, ZADD_CHUNK)
    local args = {}
    for _ = 1, take do
      n = n + 1
      args[#args + 1] = expiry
      args[#args + 1] = token .. ':' .. n
    end
    redis.call('ZADD', key, unpack(args))
    count = count - take
  end
  return n
end

-- Checks one reservation against the committed state plus what the same request already took
-- (`pending`). Returns true and (remaining, reset_us), or false and retry_after_us.
local function check(st, pend, kind, limit, amount, param)
  if kind == 'w' then
    local level = st.level + pend
    if level + amount <= limit then
      local remaining = math.max(0, math.floor(limit - level - amount))
      return true, remaining, math.ceil((level + amount) * param / limit)
    end
    return false, math.ceil((level + amount - limit) * param / limit)
  elseif kind == 'c' then
    local used = st.used + pend
    local reset = -1
    if param >= 0 then reset = param * 1000000 end
    if used + amount <= limit then return true, limit - used - amount, reset end
    return false, reset
  else
    local held = st.held + st.add + pend
    if held + amount <= limit then return true, limit - held - amount, -1 end
    return false, CONCURRENCY_RETRY_US
  end
end

local function reserve(keys, args)
  local now = now_us()
  local token, counters, requests = args[1], args[2], args[3]
  -- Per KEYS index: its kind, its param, and the index whose state it shares (the first KEYS
  -- entry of the same name, so a key listed twice still has one state).
  local kinds, params, slot_of, first_of = {}, {}, {}, {}
  local pos = 1
  for i = 1, #keys do
    local kind, param
    kind, param, pos = struct.unpack('<c1i8', counters, pos)
    if kind ~= 'w' and kind ~= 'c' and kind ~= 'q' then
      return redis.error_reply('tollgate_reserve_v3: unknown kind ' .. kind)
    end
    kinds[i], params[i] = kind, param
    local first = first_of[keys[i]]
    if not first then
      first = i
      first_of[keys[i]] = i
    end
    slot_of[i] = first
  end
  local state = {} -- by slot, loaded on first use
  -- What the current request takes per slot (and the slots it touched, to reset them), and the
  -- limit it was checked against: committed only if every reservation fits.
  local pending, limits, touched = {}, {}, {}
  local out, n_out, high = {}, 0, 0
  local len = #requests
  pos = 1
  while pos <= len do
    local n
    n, pos = struct.unpack('<i4', requests, pos)
    local mark = n_out
    n_out = n_out + 1
    out[n_out] = 1
    local n_touched = 0
    local refused, retry = nil, nil
    for i = 1, n do
      local ki, limit, amount
      ki, limit, amount, pos = struct.unpack('<i4i8i8', requests, pos)
      -- Every entry is read even after a refusal, to reach the next request.
      if not refused then
        local s = slot_of[ki]
        if not s then
          return redis.error_reply('tollgate_reserve_v3: key index out of range')
        end
        local kind, param = kinds[ki], params[ki]
        if amount > limit or (kind == 'w' and limit == 0) then -- gcra::take: no rate to refill at
          refused, retry = i, -1
        else
          local st = state[s]
          if not st then
            st = load(keys[s], kind, now, param)
            state[s] = st
          end
          local p = pending[s]
          if not p then
            p = 0
            n_touched = n_touched + 1
            touched[n_touched] = s
          end
          local ok, a, b = check(st, p, kind, limit, amount, param)
          if ok then
            pending[s] = p + amount
            limits[s] = limit
            out[n_out + 1] = a
            out[n_out + 2] = b
            n_out = n_out + 2
            if n_out > high then high = n_out end
          else
            refused, retry = i, a
          end
        end
      end
    end
    if refused then
      n_out = mark + 3
      out[mark + 1] = 0
      out[mark + 2] = refused
      out[mark + 3] = retry
      for t = 1, n_touched do pending[touched[t]] = nil end
    else
      for t = 1, n_touched do
        local s = touched[t]
        local st, amount = state[s], pending[s]
        pending[s] = nil
        if st.kind == 'w' then
          st.level = st.level + amount
          st.limit = limits[s]
        elseif st.kind == 'c' then
          st.used = st.used + amount
        else
          st.add = st.add + amount
        end
        st.dirty = true
      end
    end
    if n_out > high then high = n_out end
  end
  -- A refused request may have written statuses past its three values: cut them off.
  for k = n_out + 1, high do out[k] = nil end
  local slot = 0
  for s, st in pairs(state) do
    if st.dirty then
      local key = keys[s]
      if st.kind == 'w' then
        save_window(key, st, now)
      elseif st.kind == 'c' then
        save_budget(key, st.used, st.ttl)
      elseif st.add > 0 then
        slot = add_slots(key, st.add, now + st.hold, token, slot)
        redis.call('PEXPIRE', key, math.ceil(st.hold / 1000) + 1000)
      end
    end
  end
  return out
end

local function settle(keys, args)
  local now = now_us()
  local token = args[1]
  for i, key in ipairs(keys) do
    local base = 1 + (i - 1) * 3
    local kind, delta, param = args[base + 1], tonumber(args[base + 2]), tonumber(args[base + 3])
    if kind == 'w' then
      local st = load_window(key, now, param)
      if st.exists and st.limit > 0 then
        st.level = st.level + delta
        if st.level < 0 then st.level = 0 end
        save_window(key, st, now)
      end
    elseif kind == 'c' then
      local old = redis.call('GET', key)
      local used = tonumber(old or '0') + delta
      if used < 0 then used = 0 end
      if old or used > 0 then save_budget(key, used, param) end
    else
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      if delta < 0 then
        redis.call('ZPOPMIN', key, -delta)
      elseif delta > 0 then
        add_slots(key, delta, now + param, token .. ':s' .. i, 0)
        redis.call('PEXPIRE', key, math.ceil(param / 1000) + 1000)
      end
    end
  end
  return 1
end

redis.register_function('tollgate_reserve_v3', reserve)
redis.register_function('tollgate_settle_v3', settle)
