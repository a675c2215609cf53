#!lua name=tollgate_limiter_v1
--[[
Tollgate rate limits and budgets, one atomic function per operation. Loaded by
crates/tollgate-redis/src/lib.rs (FUNCTION LOAD REPLACE); the names carry the version
(`_v1`) so gateways of two versions can share one Redis during a rolling deploy. A change to
the arguments or the reply makes a `_v2` library next to this one, never an edit in place.

Time: the server's clock (TIME, microseconds) for windows and slot expiry, so every node agrees.
Calendar periods are chosen by the caller (the period label is in the key) and arrive with the
seconds left in the period.

tollgate_reserve_v1(KEYS = one per reservation, ARGV = token, then 4 per reservation:
  kind, limit, amount, param)
  kind 'w' window:      param = period in microseconds; key is a hash {l = level, t = time, r = limit}
  kind 'c' calendar:    param = seconds until the period ends (-1 = never); key is an integer
  kind 'q' concurrency: param = maximum hold in microseconds; key is a zset member -> expiry
  All-or-nothing: every key is checked first (a key listed twice counts twice), then all written.
  Reply (mirrored by `ReserveReplyV1` in src/lib.rs; keep both in step):
    admitted:  {1, 0, 0, remaining_1, reset_us_1, remaining_2, reset_us_2, ...}  (reset -1 = none)
    refused:   {0, index of the first limit hit (1-based), retry_after_us (-1 = never)}

tollgate_settle_v1(KEYS = one per adjustment, ARGV = token, then 3 per adjustment:
  kind, delta, param) -- same kinds and params; levels never go below zero. Reply: 1.
]]

local CONCURRENCY_RETRY_US = 1000000 -- mirrors tollgate_core::limits::CONCURRENCY_RETRY_AFTER

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
  if not v[1] then return {level = 0, limit = 0, exists = false} end
  local limit = tonumber(v[3])
  return {level = drain(tonumber(v[1]), now - tonumber(v[2]), limit, period), limit = limit, exists = true}
end

local function save_window(key, st, now, period)
  redis.call('HSET', key, 'l', fmt(st.level), 't', fmt(now), 'r', st.limit)
  local empty_ms = 0
  if st.limit > 0 then empty_ms = math.ceil(st.level * period / st.limit / 1000) end
  redis.call('PEXPIRE', key, empty_ms + 1000)
end

local function save_budget(key, used, ttl)
  redis.call('SET', key, used)
  if ttl > 0 then redis.call('EXPIRE', key, ttl + 86400) end
end

local function reserve(keys, args)
  local now = now_us()
  local token = args[1]
  local state, out = {}, {1, 0, 0}
  for i, key in ipairs(keys) do
    local base = 1 + (i - 1) * 4
    local kind, limit, amount, param = args[base + 1], tonumber(args[base + 2]), tonumber(args[base + 3]), tonumber(args[base + 4])
    local st = state[key]
    if amount > limit then return {0, i, -1} end
    if kind == 'w' then
      if limit == 0 then return {0, i, -1} end -- gcra::take: no rate to refill at
      if not st then st = load_window(key, now, param); st.kind = 'w'; st.period = param end
      if st.level + amount <= limit then
        st.level = st.level + amount
        st.limit = limit
        table.insert(out, math.max(0, math.floor(limit - st.level)))
        table.insert(out, math.ceil(st.level * param / limit))
      else
        return {0, i, math.ceil((st.level + amount - limit) * param / limit)}
      end
    elseif kind == 'c' then
      if not st then st = {kind = 'c', used = tonumber(redis.call('GET', key) or '0'), ttl = param} end
      if st.used + amount <= limit then
        st.used = st.used + amount
        table.insert(out, limit - st.used)
        if param < 0 then table.insert(out, -1) else table.insert(out, param * 1000000) end
      elseif param < 0 then
        return {0, i, -1}
      else
        return {0, i, param * 1000000}
      end
    else -- 'q'
      if not st then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        st = {kind = 'q', held = redis.call('ZCARD', key), add = 0, hold = param}
      end
      if st.held + st.add + amount <= limit then
        st.add = st.add + amount
        table.insert(out, limit - st.held - st.add)
        table.insert(out, -1)
      else
        return {0, i, CONCURRENCY_RETRY_US}
      end
    end
    state[key] = st
  end
  local n = 0
  for key, st in pairs(state) do
    if st.kind == 'w' then
      save_window(key, st, now, st.period)
    elseif st.kind == 'c' then
      save_budget(key, st.used, st.ttl)
    else
      for j = 1, st.add do
        n = n + 1
        redis.call('ZADD', key, now + st.hold, token .. ':' .. n)
      end
      redis.call('PEXPIRE', key, math.ceil(st.hold / 1000) + 1000)
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
        save_window(key, st, now, param)
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
      else
        for j = 1, delta do
          redis.call('ZADD', key, now + param, token .. ':s' .. i .. ':' .. j)
        end
        if delta > 0 then redis.call('PEXPIRE', key, math.ceil(param / 1000) + 1000) end
      end
    end
  end
  return 1
end

redis.register_function('tollgate_reserve_v1', reserve)
redis.register_function('tollgate_settle_v1', settle)
