-- Budgets (limits): admission, release and wake-ups of the budget path (see the "Budgets
-- (limits)" section of taskgate/backends/base.py; keys in lib_core.lua). Comes after lib.lua and
-- lib_claims.lua in every script but those that only store or read records; it fills in the
-- names lib.lua declares (budget_steps, move_due).
--
-- A script runs its whole text on every call, and each 'local function' there makes a closure:
-- so the steps are built inside one function, run only by a script that meets a record with
-- budgets. Work without limits pays for move_due's one look at 'timed' and a few closures.

-- The earliest timed entry this script knows of (what claim replies so the claimer waits no
-- longer); set by move_due and lowered by schedule.
local earliest_due
-- Timed entries looked at per round of move_due (the index as text: formatting nothing).
local DUE_BATCH, DUE_LAST = 16, '15'
-- Due entries one move_due handles at most: 100,000 delayed calls falling due at once would
-- otherwise hold the server for the whole lot in one script (seconds). It stops there with
-- Q.more set and the rest noted as due now, so the claimer looks again at once.
local DUE_MOVE_MAX = 256

local function build_budget_steps()
  -- Waiters are ordered by -priority * 2^40 + sequence: sequences stay below 2^40 (a trillion
  -- registrations), priorities within +-2^12, so the score is an exact double.
  local PRIORITY_WEIGHT = 1099511627776
  -- Waiters woken per budget in one step at most (a raised override with a huge backlog).
  local WAKE_MAX = 10000

  -- <text> cut at every <sep>, empty pieces kept.
  local function split(text, sep)
    local parts, start = {}, 1
    while true do
      local at = string.find(text, sep, start, true)
      if not at then
        parts[#parts + 1] = string.sub(text, start)
        return parts
      end
      parts[#parts + 1] = string.sub(text, start, at - 1)
      start = at + 1
    end
  end

  -- A budget's definition as stored in 'lb:<limit>' and 'bwait':
  -- "<limit>\31<concurrency>\31<count>\31<period>\31<fair: '1' or ''>", '' standing for none.
  local function def_of(b)
    return b.limit .. '\31' .. b.conc_text .. '\31' .. b.count_text .. '\31' .. b.period_text
      .. '\31' .. (b.fair ~= '' and '1' or '')
  end

  local function budget_from(key, limit, conc, count, period, fair)
    return {key = key, limit = limit, conc_text = conc, count_text = count, period_text = period,
      conc = tonumber(conc), count = tonumber(count), period = tonumber(period), fair = fair}
  end

  -- A budget read back from its stored definition (its fairness only as a flag: '1').
  local function budget_of_def(key, def)
    local p = split(def, '\31')
    return budget_from(key, p[1], p[2], p[3], p[4], p[5])
  end

  -- The budgets of a record (record.encode_budgets: budgets joined by \30, fields by \31:
  -- key, limit, concurrency, count, period, fair), parsed once per text: the steps outlive a
  -- call in the function library (see new_call), so a text parsed stays parsed, up to
  -- PARSED_MAX texts (a keyed limit has a text per key value), then the cache starts afresh.
  -- The tables are only read, never changed.
  local PARSED_MAX = 1024
  local parsed, parsed_count = {}, 0
  local function parse_budgets(text)
    local list = parsed[text]
    if list then return list end
    list = {}
    local keys = {}
    for _, part in ipairs(split(text, '\30')) do
      local p = split(part, '\31')
      list[#list + 1] = budget_from(p[1], p[2], p[3], p[4], p[5], p[6])
      keys[#keys + 1] = p[1]
    end
    list.keys = keys  -- for one HMGET over them all
    if parsed_count == PARSED_MAX then parsed, parsed_count = {}, 0 end
    parsed[text], parsed_count = list, parsed_count + 1
    return list
  end

  -- Live overrides by limit name ({concurrency, count, period} texts), read once per script.
  local overrides
  local function effective(b)
    if b.limit == '' then return b.conc, b.count, b.period end
    if not overrides then
      overrides = {}
      local all = redis.call('HGETALL', k('overrides'))
      for i = 1, #all, 2 do overrides[all[i]] = split(all[i + 1], '\31') end
    end
    local o = overrides[b.limit]
    if not o then return b.conc, b.count, b.period end
    local conc = tonumber(o[1]) or b.conc
    if o[2] ~= '' then return conc, tonumber(o[2]), tonumber(o[3]) end
    return conc, b.count, b.period
  end

  -- Record that budget <b> may have holders, waiters or starts (the sweep in recover.lua drops
  -- the entry once it has none): what overrides, usage and purge find budgets by.
  local function activate(b)
    if redis.call('HSET', k('lb:' .. b.limit), b.key, def_of(b)) == 1 then
      redis.call('SADD', k('lnames'), b.limit)
    end
  end

  -- Starts of <key> within (now - period, now], after dropping the older ones.
  local function window_starts(key, period, now)
    local skey = k('bs:' .. key)
    redis.call('ZREMRANGEBYSCORE', skey, '-inf', time_text(now - period))
    return redis.call('ZCARD', skey)
  end

  -- When the window of <key> (holding <starts> starts) next admits one: when its oldest start
  -- past the (count - 1) newest leaves it. nil when it never does (a count below 1).
  local function rate_ready(key, count, period, starts)
    local index = starts - count
    if index < 0 then return nil end
    local at = string.format('%d', index)
    local entry = redis.call('ZRANGE', k('bs:' .. key), at, at, 'WITHSCORES')
    if not entry[2] then return nil end
    return tonumber(entry[2]) + period
  end

  -- Wake the waiters of <key> at <ready> (the earlier time wins if it is there already).
  local function schedule(key, ready)
    if not ready then return end
    redis.call('ZADD', k('timed'), 'LT', timed_score(ready), 'b:' .. key)
    if not earliest_due or ready < earliest_due then
      earliest_due = ready
      -- An idle runner may be blocked past this instant: make one look again (and one of
      -- each line of runners serving only some queues: the waiters' queues are not known here).
      Q.notify(nil)
    end
  end

  local function waiter_key(key, fair)
    if fair ~= '' then return k('bw:' .. key .. ':' .. fair) end
    return k('bw:' .. key)
  end

  -- Append up to <n> waiters of <key>'s plain queue to <ids>, in order.
  local function pop_plain(key, n, ids)
    local popped = redis.call('ZPOPMIN', k('bw:' .. key), string.format('%d', n))
    for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  end

  -- Append waiters of <key>'s fairness queues to <ids> until it holds <n>: round robin, the head
  -- of the next value in the ring each time.
  local function pop_fair(key, n, ids)
    local ring = k('br:' .. key)
    while #ids < n do
      local value = redis.call('LPOP', ring)
      if not value then return end
      local sub = k('bw:' .. key .. ':' .. value)
      local head = redis.call('ZPOPMIN', sub)[1]
      if head then ids[#ids + 1] = head end
      if redis.call('EXISTS', sub) == 1 then redis.call('RPUSH', ring, value) end
    end
  end

  -- Take up to <n> waiters of <key> off its queues, in waiting order: the fairness queues first
  -- when the budget is <fair> (tasks sharing a budget should agree on that; whatever they do,
  -- no waiter is left behind). Returns them and whether any waiter is left.
  local function pop_waiters(key, fair, n)
    local ids = {}
    if fair then pop_fair(key, n, ids) else pop_plain(key, n, ids) end
    if #ids < n then
      if fair then pop_plain(key, n - #ids, ids) else pop_fair(key, n, ids) end
    end
    return ids, redis.call('EXISTS', k('bw:' .. key), k('br:' .. key)) > 0
  end

  -- Move as many waiters of <key> as its free capacity admits (effective values <conc>, <count>,
  -- <period>) to the front of the ready queue, longest waiting first, taking nothing for them:
  -- the claim that pops them admits them or parks them again in their place. With free slots
  -- but a full window, the budget goes on 'timed' instead; and so it does when the window is
  -- what leaves waiters behind, for when the starts just made room for leave it again.
  -- <def>: the stored definition, when the caller has read it already.
  local function wake_budget(key, conc, count, period, now, def)
    def = def or redis.call('HGET', k('bwait'), key)
    if not def then return end  -- nobody waits
    -- Waiters woken before and not claimed yet count as taken: a free slot is handed to one
    -- waiter, never to two (which would put later wake-ups ahead of earlier ones in the queue,
    -- out of order and out of turn).
    local woken = (redis.call('HGET', k('bwoken'), key) or 0) + 0
    local n = WAKE_MAX
    if conc then
      n = conc - redis.call('SCARD', k('bh:' .. key)) - woken
      if n <= 0 then return end
    end
    local starts
    if count then
      starts = window_starts(key, period, now)
      if starts >= count then
        schedule(key, rate_ready(key, count, period, starts))
        return
      end
      n = math.min(n, count - starts - woken)
      if n <= 0 then
        local oldest = redis.call('ZRANGE', k('bs:' .. key), '0', '0', 'WITHSCORES')[2]
        schedule(key, (tonumber(oldest) or now) + period)
        return
      end
    end
    local ids, left = pop_waiters(key, string.sub(def, -1) == '1', n)
    for i = #ids, 1, -1 do push_ready(ids[i], true, 'read') end
    if #ids > 0 then redis.call('HINCRBY', k('bwoken'), key, string.format('%d', #ids)) end
    if not left then
      redis.call('HDEL', k('bwait'), key)
    elseif starts and #ids == count - starts - woken then
      -- The window is full once these start: the oldest start in it leaves first (or, with
      -- none yet, the ones just woken, about a period from now).
      local oldest = redis.call('ZRANGE', k('bs:' .. key), '0', '0', 'WITHSCORES')[2]
      schedule(key, (tonumber(oldest) or now) + period)
    end
  end

  -- wake_budget for a budget read from its stored definition <def> (overrides applied).
  local function wake_stored(key, def, now)
    local conc, count, period = effective(budget_of_def(key, def))
    wake_budget(key, conc, count, period, now, def)
  end

  -- Park <id> (fields <f>) on budget <b>, which refused it (<ready>: when its rate admits it,
  -- for a rate refusal), in its place: (-priority, registration sequence), per fairness value.
  local function park_on_budget(id, f, b, ready, now)
    local v = redis.call('HMGET', k('inv:' .. id), 'priority', 'seq')
    local score = -(tonumber(v[1]) or 0) * PRIORITY_WEIGHT + (tonumber(v[2]) or 0)
    local queue = waiter_key(b.key, b.fair)
    redis.call('ZADD', queue, string.format('%d', score), id)
    if b.fair ~= '' and redis.call('ZCARD', queue) == 1 then
      redis.call('RPUSH', k('br:' .. b.key), b.fair)
    end
    if redis.call('HSET', k('bwait'), b.key, def_of(b)) == 1 then activate(b) end
    local rate = ready and '1' or ''
    if f.status == 'concurrency_controlled' then  -- woken and parked again: no new history entry
      redis.call('HSET', k('inv:' .. id), 'parked_on', b.key, 'parked_rate', rate)
    else
      transition(id, f, 'concurrency_controlled', now, nil, 'parked_on', b.key,
        'parked_rate', rate, 'parked_since', time_text(now))
    end
    if ready then schedule(b.key, ready) end
  end

  -- Whether every budget of <list> admits one more start now (effective values): nil, or the
  -- budget that refuses it and, for a rate refusal, when its rate admits again; then the
  -- holders and window starts counted per budget (what take needs).
  local function refusal(list, now)
    local holders, starts = {}, {}
    for i, b in ipairs(list) do
      local conc, count, period = effective(b)
      if conc then
        holders[i] = redis.call('SCARD', k('bh:' .. b.key))
        if holders[i] >= conc then return b, nil, holders, starts end
      end
      if count then
        starts[i] = window_starts(b.key, period, now)
        if starts[i] >= count then
          return b, rate_ready(b.key, count, period, starts[i]), holders, starts
        end
      end
    end
    return nil, nil, holders, starts
  end

  -- Take a slot of every budget of <list> and a token of every rate for <attempt> of <id>
  -- (refusal found none refusing, and counted <holders> and <starts>).
  local function take(list, id, attempt, holders, starts)
    local member = id .. ':' .. attempt
    for i, b in ipairs(list) do
      if holders[i] then redis.call('SADD', k('bh:' .. b.key), id) end
      if starts[i] then
        local skey = k('bs:' .. b.key)
        redis.call('ZADD', skey, now_text, member)
        local _, _, period = effective(b)
        redis.call('PEXPIRE', skey, string.format('%d', math.ceil(period * 1000)))
      end
      -- Listed already while it has holders or starts (the sweep keeps it while either exists).
      if (holders[i] or 0) == 0 and (starts[i] or 0) == 0 then activate(b) end
    end
  end

  -- Admit <id> (fields <f>) at claim: every budget admits it, and it takes every slot and rate
  -- token, or it takes nothing and waits on the first budget that refused it (or is dropped).
  -- Returns true when admitted (the caller marks it running).
  local function admit(id, f, now, ttl, attempt)
    -- A waiter in the ready queue was woken by the budget it waited on: it stops counting as
    -- woken there, admitted or not.
    local woken_from
    if f.status == 'concurrency_controlled' then
      woken_from = redis.call('HGET', k('inv:' .. id), 'parked_on')
      if woken_from and redis.call('HINCRBY', k('bwoken'), woken_from, '-1') <= 0 then
        redis.call('HDEL', k('bwoken'), woken_from)
      end
    end
    local list = parse_budgets(f.budgets)
    local refused, ready, holders, starts = refusal(list, now)
    if not refused then
      take(list, id, attempt, holders, starts)
      return true
    end
    if f.drop then
      release_regkey(id, f.regkey)
      finalize(id, f, 'concurrency_controlled_final', now, nil, nil, nil, ttl)
      return false
    end
    park_on_budget(id, f, refused, ready, now)
    -- A woken waiter refused by another budget took nothing from the one that woke it: pass
    -- that capacity on to its next waiter, or it would sit idle while they wait.
    if woken_from and woken_from ~= refused.key then
      for _, b in ipairs(list) do
        if b.key == woken_from then
          local conc, count, period = effective(b)
          wake_budget(b.key, conc, count, period, now)
        end
      end
    end
    return false
  end

  -- Whether a new registration, budgets <text>, may start right now, for register to hand it
  -- to a waiting runner: no budget of it has waiters (they go first: a woken one sits at the
  -- head of the ready queue, which a hand-over requires empty; the others wait on their
  -- budget, or on 'timed' for its rate) and every budget admits it. Returns its budgets and
  -- what take needs (the caller takes them once it found a runner), or nil: nothing taken,
  -- nothing parked; the registration is queued, and a claim admits or parks it.
  local function fresh_admission(text, now)
    local list = parse_budgets(text)
    local waiting = redis.call('HMGET', k('bwait'), unpack(list.keys))
    for i = 1, #list do
      if waiting[i] then return nil end
    end
    local refused, _, holders, starts = refusal(list, now)
    if refused then return nil end
    return list, holders, starts
  end

  -- Take back the rate starts of attempt 1 of <id> (fields <f>): a hand-over its runner never
  -- read never started (see undo_hand_over and cancel_unread in lib_claims.lua), so its start must
  -- not keep a window full. Before release, which wakes what then fits.
  local function forget_handed_start(id, f)
    local member = id .. ':1'
    for _, b in ipairs(parse_budgets(f.budgets)) do
      redis.call('ZREM', k('bs:' .. b.key), member)
    end
  end

  -- Free every slot <id> (fields <f>) holds, in one step, and wake the waiters that now fit.
  -- Nobody waits, the usual case: one look per budget, and the overrides go unread.
  local function release(id, f, now)
    local list = parse_budgets(f.budgets)
    local freed
    for i, b in ipairs(list) do
      if redis.call('SREM', k('bh:' .. b.key), id) == 1 then
        freed = freed or {}
        freed[i] = true
      end
    end
    if not freed then return end
    -- One look at the waiters of them all (a wake changes no other budget's entry there).
    local defs = redis.call('HMGET', k('bwait'), unpack(list.keys))
    for i, b in ipairs(list) do
      if freed[i] and defs[i] then
        local conc, count, period = effective(b)
        wake_budget(b.key, conc, count, period, now, defs[i])
      end
    end
  end

  -- Wake the waiters that now fit in every budget of limit <limit> (after its override changed).
  local function wake_limit(limit, now)
    for _, key in ipairs(redis.call('HKEYS', k('lb:' .. limit))) do
      local def = redis.call('HGET', k('bwait'), key)
      if def then wake_stored(key, def, now) end
    end
  end

  -- Take waiting <id> (fields <f>, status concurrency_controlled) off the budget it waits on
  -- (Backend.cancel): out of its wait queues and fairness ring, or, when it was woken and sat in
  -- a ready lane (<woken>: the caller took it out of there), out of the budget's woken count,
  -- that capacity passed on to the next waiter as a release would.
  local function cancel_waiter(id, f, now, woken)
    local key = redis.call('HGET', k('inv:' .. id), 'parked_on')
    if not key then return end
    local b
    for _, each in ipairs(parse_budgets(f.budgets)) do
      if each.key == key then b = each end
    end
    if woken then
      if redis.call('HINCRBY', k('bwoken'), key, '-1') <= 0 then
        redis.call('HDEL', k('bwoken'), key)
      end
      if b then
        local conc, count, period = effective(b)
        wake_budget(key, conc, count, period, now)
      end
      return
    end
    redis.call('ZREM', k('bw:' .. key), id)
    if b and b.fair ~= '' then
      local sub = k('bw:' .. key .. ':' .. b.fair)
      if redis.call('ZREM', sub, id) == 1 and redis.call('EXISTS', sub) == 0 then
        redis.call('LREM', k('br:' .. key), '0', b.fair)
      end
    end
    if redis.call('EXISTS', k('bw:' .. key), k('br:' .. key)) == 0 then
      redis.call('HDEL', k('bwait'), key)
    end
  end

  -- A new call: forget what this one read (the overrides may change between calls).
  local function new_call() overrides = nil end

  return {admit = admit, release = release, wake_stored = wake_stored, wake_limit = wake_limit,
    budget_of_def = budget_of_def, effective = effective, cancel_waiter = cancel_waiter,
    fresh_admission = fresh_admission, take = take, forget_handed_start = forget_handed_start,
    new_call = new_call}
end

-- The steps, built on first use. A script's text runs afresh on every call, so as a script it
-- builds them once per call that meets a budget; the function library keeps them between calls
-- (their closures made once) and begin_call only tells them a new call began.
local built_steps
budget_steps = function()
  built_steps = built_steps or build_budget_steps()
  return built_steps
end

-- Wake what is due on 'timed' (before a claim looks at the ready queue): the waiters of a due
-- budget ("b:<budget>"); a due invocation ("d:<id>" or "i:<id>", delayed or retrying) goes to
-- the tail of its queue, its status unchanged (the claim that takes it decides). The queues
-- it lands in are noted in Q.deferred (made when something is due), not woken: the claim that
-- called it takes that work first (see claim_next in lib.lua). Notes the earliest entry left.
-- One ZRANGE when nothing is due. Stops after DUE_MOVE_MAX due entries (see there).
move_due = function(now)
  Q.marked = false
  local moved = 0
  while true do
    local entries = redis.call('ZRANGE', k('timed'), '0', DUE_LAST, 'WITHSCORES')
    if entries[1] == 'l:' then  -- not an entry: the marker of 'lanes' (see lib_core.lua)
      Q.marked = true
      table.remove(entries, 1)
      table.remove(entries, 1)
      if #entries == 0 then return end
    end
    local rescored = false
    for i = 1, #entries, 2 do
      local score = entries[i + 1] + 0
      -- Scored in seconds (see TIMED_SECONDS_BELOW): rescored, counted as moved. Such entries
      -- sort first; once past them, all are looked at again in their new order.
      local seconds = score < TIMED_SECONDS_BELOW
      if rescored and not seconds then break end
      local at = score / 1000000
      if at > now and not seconds then
        earliest_due = at
        return
      end
      if moved == DUE_MOVE_MAX then
        Q.more = true
        earliest_due = now
        return
      end
      moved = moved + 1
      local member = entries[i]
      if seconds then
        redis.call('ZADD', k('timed'), timed_score(score), member)
        rescored = true
      else
        Q.deferred = Q.deferred or {}
        redis.call('ZREM', k('timed'), member)
        local key, tag = string.sub(member, 3), string.byte(member)
        if tag == 100 then  -- 'd': queue 'default', priority 0
          push_ready(key, false)
        elseif tag == 105 then  -- 'i': its queue and priority are read from the record
          push_ready(key, false, 'read')
        else
          local def = redis.call('HGET', k('bwait'), key)
          if def then budget_steps().wake_stored(key, def, now) end
        end
      end
    end
    if not rescored and #entries < 2 * DUE_BATCH - (Q.marked and 2 or 0) then return end
  end
end

-- Milliseconds from <now> until the earliest timed entry (rounded up), -1 when there is none.
local function due_ms(now)
  if not earliest_due then return -1 end
  return math.max(1, math.ceil((earliest_due - now) * 1000))
end

