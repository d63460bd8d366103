-- Core steps of the taskgate scripts: prepended to every script when it is loaded (lib.lua,
-- the state-machine steps, follows for the scripts that need them).
--
-- KEYS[1] is the app's key prefix, "taskgate:{<app_id>}:". Every key a script touches is built
-- from it, so all keys of an app share one hash tag and one cluster slot.
--
-- Layout under the prefix (store format 4: see 'format'):
--   format            string: the layout's number, '4', written by the first script of each
--                     process (store_format.lua): records and indexes of earlier builds are
--                     not read (their field names, indexes and scores differ), so a store
--                     that still keeps some (a task index that is a zset; layout 3: an entry
--                     on 'timed') is refused until drained or purged
--   inv:<id>          hash: the invocation record (binary fields kept as raw bytes): 't' the
--                     task id, 'a' the arguments, 'x' the registration (see 'task:<task_id>';
--                     'c' the caller's time when it is not x's),
--                     's' the status (absent while 'registered': the first change writes it),
--                     first, as a queued record holds nothing else (one-letter names keep it
--                     in a 64-byte allocation; every HMGET scans from the front); then the
--                     other fields by their names, absent at their defaults. Its
--                     history in it too, one field per transition after the first: 'h1',
--                     'h2'... (written by the HSET that changes the status: no extra call) and
--                     'hn', their number. An entry is "<code><time>", then "\31<runner_id>"
--                     when a runner made it, or "\31" alone for the runner of the entry before
--                     (the step that ends a run: the runner is stored once). Codes: s scheduled,
--                     r registered, c concurrency_controlled, x concurrency_controlled_final,
--                     u running, y retry, k success, f failed, n cancelled. The first
--                     transition is not stored: ('registered', registration time, none), or
--                     'h0' = 's' when it was 'scheduled' (at that time). Every value stays
--                     within 64 bytes (runner ids of up to 45 characters), so a finished
--                     record keeps Redis's compact listpack
--                     encoding (a value past 'hash-max-listpack-value' turns the whole hash into
--                     a table, twice the memory; field lookups in a listpack are scans: 1.5 to
--                     5% more server instructions per task than a table, for 70% less memory
--                     per finished record)
--   done:<id>         list: a token pushed when the invocation becomes final, if a result
--                     waiter marked the record ('waited' field) while it was not final yet
--   queue             list: ready invocation ids of queue "default" at priority 0 (the plain
--                     path); woken and handed-back ones go to the head
--   lane:<p>\31<q>    list: the same for queue <q> at priority <p> (any other pair); exists
--                     only while not empty
--   lanes             zset: "<p>\31<q>" -> -<p>, the non-empty lanes (absent when none); a claim
--                     takes the head of the highest-priority lane it serves, 'queue' counting
--                     as priority 0. While it exists, 'timed' holds the marker "l:" at score 0
--                     (first of all): the look every claim takes at 'timed' tells it whether to
--                     look at lanes, so the plain path pays no command for them
--   wake              list: tokens for idle runners blocked in BLPOP (capped length); a token
--                     is pushed when work lands in an empty queue, and by a claim that leaves
--                     work behind (passing the baton), so busy runners cause no wake-ups
--   wake:<q>          list: the same for runners serving only some queues (they BLPOP the
--                     lists of their queues, never 'wake'): a token there is for work of <q>,
--                     so no runner eats a wake-up for work it cannot take
--   wake_queues       set:  queues with a wake:<q> list (what purge deletes)
--   regkeys           hash: registration key -> id of the waiting invocation holding it
--   slots:<key>       set:  ids holding a running slot of <key>
--   parked:<key>      list: ids of priority 0 parked on <key>, first come first served
--   pz:<key>          zset: ids of other priorities parked on <key>, by -p * 2^41 + 2^40 + seq
--                     (first in line: - seq); a freed slot goes to its head when that has a
--                     priority above 0, else to the head of parked:<key>, else to its head
--   parked_keys       set:  running keys with a non-empty parked list or pz zset
--   slot_keys         set:  running keys with a non-empty slot set
--   leases            zset: running id -> lease expiry in microseconds (what recover looks at;
--                     this and the other zsets of times a script reads back, 'idle', 'idleq'
--                     and 'inboxes', score integer microseconds: see micros_text)
--   expb              zset: second s -> s, for each exp:<s>
--   exp:<s>           list: "<id>\31<micros>", the invocations whose result TTL ends at
--                     s.<micros> (in the second s), in the order they became final: expire.lua
--                     deletes them from the head while they are due (with one TTL for all, the
--                     order of their expiry; with several, one may wait behind another of its
--                     second: late by less than a second, never early). A list entry per final
--                     invocation (~47 B) instead of a zset entry (~145 B); a bucket costs
--                     ~400 B, shared by the invocations whose TTL ends in its second (below
--                     about 4 finishes a second, expiry then takes more memory than a zset
--                     did, but there is little of it)
--   task:<task_id>    stream: the task's invocations in order of registration, an entry
--                     {i = <id>} each, its entry id "<micros>-<n>" the registration time (the
--                     caller's, in microseconds: see index_entry), which the record keeps as
--                     'x': its deletion is an XDEL. A listing goes newest first (XREVRANGE); a
--                     listing of every task merges them: no index of all invocations, one entry
--                     less per invocation (see pages.py). A stream entry costs ~40 B, a zset entry
--                     ~145 (a zset past 128 entries is a skiplist and a dict); a deleted entry
--                     keeps its place until the rest of its node (100 entries) is deleted too
--   counts            hash: "<task_id>\31<status>" -> number of invocations (also lists tasks)
--   runners           zset: runner id -> liveness expiry
--   rinfo             hash: runner id -> its last description (record.RunnerInfo JSON, a few
--                     KB), written by announce.lua with every heartbeat of the runner
--   rinfo_expiry      zset: runner id -> until when that description holds; runner_infos.lua
--                     reads the unexpired ones (one ZRANGEBYSCORE, one HMGET), announce.lua
--                     prunes the others. One hash and one zset, not a string key with EX per
--                     runner: purge and the reads then never scan the keyspace
--   idle              zset: "<runner_id>\31<lease_seconds>" (a runner serving only some queues:
--                     "<runner_id>\31<lease_seconds>\31<q1>,<q2>...") -> until when that runner
--                     waits for work in BLPOP; register hands a new invocation straight to the
--                     longest waiting one serving its queue (claimed in the same step) instead
--                     of queueing it
--   idleq             zset: the members of 'idle' that serve only some queues (same scores):
--                     whom wake:<q> tokens are for
--   cancels:<runner>  list: ids whose cancel was requested while <runner> ran them (cancel
--                     pushes, the runner's wait_cancel_requests BLPOPs); a dead runner's goes
--                     with recover_runner, or a day after the last push (the records carry
--                     'cancel_requested': recovery ends them cancelled all the same)
--   cancel_runners    set:  runners with a cancels: list (what purge deletes)
--   ticks             hash: periodic task id -> last tick registered (register_tick.lua)
--   inbox:<runner>    list: invocations handed to <runner> by register, as
--                     "<id>\31<task_id>\31<max_retries>\31<arguments>" (already claimed for it)
--   inboxes           zset: runner -> when register last pushed to its empty inbox; a live
--                     runner pops its inbox within milliseconds, so an inbox still unread a
--                     grace later belongs to a dead runner and is taken back (see lib.lua)
--
-- Records hold 'priority' (absent when 0), 'queue' (absent when "default"), 'trace_context'
-- (the caller's, only when tracing is on) and, once its cancel
-- was requested while it ran, 'cancel_requested' ('1'); 'seq' is taken from the counter below by
-- records with budgets or a priority other than 0 that park.
--
-- Budgets (limits; only records with a 'budgets' field use them, see lib_budgets.lua). Such a
-- record also holds 'seq' (its registration sequence) and, once
-- it waited, 'parked_on' (the budget), 'parked_rate' ('1': refused by the rate) and
-- 'parked_since'. A <budget> is its key text (e.g. "limit llm-api"), a <limit> a limit name
-- ('' for a task's own running scope used as a budget):
--   seq               counter: registration sequence of records with budgets
--   bh:<budget>       set:  ids holding a slot of the budget
--   bw:<budget>       zset: ids waiting on the budget, by -priority * 2^40 + seq
--   bw:<budget>:<v>   zset: the same for fairness value <v>, when the limit is fair
--   br:<budget>       list: fairness values with waiters, the round robin's ring (a wake-up
--                     pops one, takes the head of its queue, pushes it back if not empty)
--   bs:<budget>       zset: starts "<id>:<attempt>" by time, trimmed to the rate's window and
--                     expiring a period after the last start
--   bwait             hash: budget -> definition, for budgets with waiters; a definition is
--                     "<limit>\31<concurrency>\31<count>\31<period>\31<fair ('1' or '')>"
--   lb:<limit>        hash: budget -> definition, for budgets of the limit that may have
--                     holders, waiters or starts (what overrides, usage and purge look at;
--                     recover.lua sweeps out those left with none)
--   lnames            set:  limits with an lb: hash
--   bsweep            hash: limit -> HSCAN cursor of that sweep
--   bwoken            hash: budget -> waiters it woke (moved to the ready queue) that no claim
--                     has taken yet; they count as taken when it wakes more
--   timed             zset, score integer microseconds (see micros_text; seconds before
--                     layout 4): "l:" -> 0 while 'lanes' exists (see there), "b:<budget>" ->
--                     when a rate admits its waiters again, and "d:<id>" (queue 'default',
--                     priority 0) or "i:<id>" (any other: the record says which) -> when a
--                     delayed invocation (SCHEDULED, see register.lua) or a retry with a delay
--                     (RETRY, see finish_one in lib.lua) becomes ready; every claim first wakes
--                     the waiters of the due budgets and moves the due invocations to the tail
--                     of their queue (move_due in lib_budgets.lua)
--   overrides         hash: limit -> live override "<concurrency>\31<count>\31<period>" ('' =
--                     declared value)

-- The prefix (KEYS[1]): set by the line after the steps in a script, by begin_call in the
-- function library (see taskgate/backends/redis/lua.py).
local P
-- The budget steps: lib_budgets.lua fills them in where it is loaded (the function library, and
-- scripts that are not CORE_ONLY in lua.py); nil in register.lua run as a script of its own.
local budget_steps
-- Arguments a script reads before register.lua's (register_tick.lua sets it: see there).
local ARG_BASE = 0
local WAKE_TOKENS = 64

local function k(name) return P .. name end
-- (Steps run per task write P .. 'inv:' .. id, not k('inv:' .. id): one string made, not two.)

-- A script dates all its transitions with one time; its text is kept with it (see time_text).
local now_number, now_text

-- The server's time in seconds. Its text is built from TIME's own digits, formatting nothing;
-- its number by coercion ('x + 0', as numbers are on every task's path: tonumber parses twice).
local function server_now()
  local t = redis.call('TIME')
  local seconds, micros = t[1], t[2]
  now_number = seconds + micros / 1000000
  now_text = seconds .. '.' .. string.sub('00000' .. micros, -6)
  return now_number
end

local function now_from(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  return server_now()
end

-- Whether a runner waits for work: every runner blocked on 'wake' is in line ('idle') first,
-- so with nobody in line a wake-up token would only lie there (busy runners look anyway).
local function runners_waiting()
  return redis.call('ZCARD', k('idle')) > 0
end

local function wake()
  if redis.call('RPUSH', k('wake'), '1') > WAKE_TOKENS then
    redis.call('LTRIM', k('wake'), -WAKE_TOKENS, -1)
  end
end

-- Queues and priorities, in one table: Q.marked, whether 'lanes' may exist, as the marker "l:"
-- on 'timed' told move_due (nil: not looked); Q.lanes(), the steps that queues other than the
-- plain lane, priorities and runners serving only some queues need, built on first use;
-- Q.more, set by a claim that stopped before the ready queue (or move_due before the due part of
-- 'timed') was done with (see claim_ready in lib.lua); Q.tally, the counts' changes a script
-- sums before writing them (see count); and Q.notify. One local for all: every top-level local
-- a later function refers to makes each closure a script creates per call (see
-- lib_budgets.lua) a little dearer, on every call.
local Q = {}
function Q.lanes()
  if Q.built then return Q.built end
  local L = {}

  -- Runners serving only some queues wait on wake:<queue> (see 'idleq'): one token there.
  function L.wake_queue(queue)
    local list = k('wake:' .. queue)
    local n = redis.call('RPUSH', list, '1')
    if n > WAKE_TOKENS then
      redis.call('LTRIM', list, -WAKE_TOKENS, -1)
    elseif n == 1 then
      redis.call('SADD', k('wake_queues'), queue)  -- for purge
    end
  end

  -- A token for the runners serving only some queues: on wake:<queue>, or, <queue> nil, on the
  -- list of the first queue of each (a timed entry whose queue is not known here).
  function L.wake_some(queue)
    if queue then return L.wake_queue(queue) end
    for _, member in ipairs(redis.call('ZRANGE', k('idleq'), '0', '-1')) do
      L.wake_queue(string.match(member, '\31[^\31]*\31([^,]*)'))
    end
  end

  -- The lane of (<queue>, <priority>) ('queue' for the plain pair), and its member of 'lanes'.
  function L.lane_of(queue, priority)
    if queue == 'default' and priority == 0 then return k('queue'), nil end
    local member = string.format('%d', priority) .. '\31' .. queue
    return k('lane:' .. member), member
  end

  -- Push <id> to the lane of (<queue>, <priority>), not the plain one; true when it was empty.
  function L.push(id, front, queue, priority)
    local lane, member = L.lane_of(queue, priority)
    if redis.call(front and 'LPUSH' or 'RPUSH', lane, id) ~= 1 then return false end
    if member then
      if redis.call('ZADD', k('lanes'), string.format('%d', -priority), member) == 1 then
        redis.call('ZADD', k('timed'), '0', 'l:')
      end
      Q.marked = true
    end
    return true
  end

  -- Drop <member> from 'lanes' (its lane is empty); the last one takes the marker with it.
  function L.drop(member)
    redis.call('ZREM', k('lanes'), member)
    if redis.call('EXISTS', k('lanes')) == 0 then redis.call('ZREM', k('timed'), 'l:') end
  end

  -- The queue of a member of 'lanes'.
  function L.queue_of(member)
    return string.sub(member, string.find(member, '\31', 1, true) + 1)
  end

  -- The next ready id for a claim serving <serves> (a set of queue names; nil: every queue)
  -- while 'lanes' exists: the head of the highest-priority lane it serves, 'queue' standing for
  -- ("default", 0) and going before the other queues of priority 0.
  function L.pop(serves)
    local plain = not serves or serves['default']
    local tried_plain = not plain
    local all = redis.call('ZRANGE', k('lanes'), '0', '-1', 'WITHSCORES')
    for i = 1, #all, 2 do
      if not tried_plain and tonumber(all[i + 1]) >= 0 then
        tried_plain = true
        local id = redis.call('LPOP', k('queue'))
        if id then return id end
      end
      local member = all[i]
      if not serves or serves[L.queue_of(member)] then
        local lane = k('lane:' .. member)
        local id = redis.call('LPOP', lane)
        if redis.call('EXISTS', lane) == 0 then L.drop(member) end
        if id then return id end
      end
    end
    if not tried_plain then return redis.call('LPOP', k('queue')) end
    return nil
  end

  -- The queues with ready work (a set), for the batons of runners serving only some queues.
  function L.queues_with_work()
    local queues = {}
    if redis.call('LLEN', k('queue')) > 0 then queues['default'] = true end
    for _, member in ipairs(redis.call('ZRANGE', k('lanes'), '0', '-1')) do
      queues[L.queue_of(member)] = true
    end
    return queues
  end

  -- Parked waiters of priority p other than 0 are ordered in pz:<key> by
  -- -p * 2^41 + 2^40 + seq (first in line: - seq): p within +-1000 and seq below 2^40 keep the
  -- score an exact double.
  function L.parked_score(p, first)
    local seq = redis.call('INCR', k('seq'))
    return string.format('%d', -p * 2199023255552 + 1099511627776 + (first and -seq or seq))
  end

  -- Park <id> (fields <f>, a priority other than 0 unless <first>) on its running key: at
  -- the tail of its priority, or first in line.
  function L.park(id, f, first)
    if f.priority == 0 then
      redis.call('LPUSH', k('parked:' .. f.key), id)
    else
      redis.call('ZADD', k('pz:' .. f.key), L.parked_score(f.priority, first), id)
    end
    redis.call('SADD', k('parked_keys'), f.key)
  end

  -- The set of queues in <text> ("<q1>,<q2>...").
  function L.queue_set(text)
    local set = {}
    for queue in string.gmatch(text, '[^,]+') do set[queue] = true end
    return set
  end

  Q.built = L
  return L
end

-- Fill in f.queue and f.priority of <id> (fields() leaves them out: the plain path never needs
-- them, and a missing field costs a scan of a small hash).
function Q.lane(id, f)
  if f.queue == nil then
    local v = redis.call('HMGET', k('inv:' .. id), 'queue', 'priority')
    f.queue, f.priority = v[1] or 'default', (v[2] or 0) + 0
  end
  return f
end

-- Work landed in empty <queue>: wake a runner that may take it (<queue> nil: any runner
-- serving some queue, as for a timed entry whose queue is not known here).
function Q.notify(queue)
  if not runners_waiting() then return end
  wake()
  if redis.call('ZCARD', k('idleq')) > 0 then Q.lanes().wake_some(queue) end
end

-- Work landed in empty <queue> (see Q.notify). While Q.deferred is a set (a finish followed by
-- its runner's claim, see finish_and_claim.lua; a claim's move of what fell due, see claim_next
-- in lib.lua), the queue is noted instead: that claim often takes this very work (the next
-- waiter of a key whose slot the finish freed, a delayed call now due), and a runner woken for
-- it would find nothing. The claim passes the baton for work it leaves behind.
function Q.landed(queue)
  if Q.deferred then
    Q.deferred[queue or 'default'] = true
  else
    Q.notify(queue)
  end
end

-- Notify the queues of <deferred> (a set that was Q.deferred, or nil) once the claim their work
-- waited for is done, unless it <batoned>: passing the baton covers what it left behind.
function Q.notify_deferred(deferred, batoned)
  if deferred and not batoned then
    for queue in pairs(deferred) do Q.notify(queue) end
  end
end

-- Put <id> in the ready lane of <queue> (nil: "default") at <priority> (nil: 0), at the head
-- when <front>; wake a runner if the lane was empty. Callers without the record's fields pass
-- queue 'read': they are read here (woken waiters, due timed invocations).
local function push_ready(id, front, queue, priority)
  if queue == 'read' then
    local v = redis.call('HMGET', k('inv:' .. id), 'queue', 'priority')
    queue, priority = v[1] or 'default', (v[2] or 0) + 0
  end
  if (queue == nil or queue == 'default') and (priority == nil or priority == 0) then
    if redis.call(front and 'LPUSH' or 'RPUSH', k('queue'), id) == 1 then Q.landed('default') end
  elseif Q.lanes().push(id, front, queue or 'default', priority or 0) then
    Q.landed(queue or 'default')
  end
end

local function is_final(status)
  return status == 'success' or status == 'failed' or status == 'concurrency_controlled_final'
    or status == 'cancelled'
end

-- Numbers reach Redis as text: a number passed to redis.call is formatted ('%.17g') on every
-- call, and a float's formatting (C's printf of a double) costs thousands of instructions, more
-- than the command it feeds. So scripts pass text, and times are written to the microsecond as
-- two integers ('%d' is cheap): "<seconds>.<micros>", what '%.6f' would print.
local function time_text(t)
  if t == now_number then return now_text end
  local micros = math.floor(t * 1000000 + 0.5)
  return string.format('%d.%06d', math.floor(micros / 1000000), micros % 1000000)
end

-- The score of time <t> in the zsets of times ('leases', 'idle', 'idleq', 'inboxes', 'timed'):
-- whole microseconds, not seconds. Redis keeps a small zset as a listpack of text scores: a
-- fractional score is printed ('%.17g') on every insert and parsed back (strtod) on every
-- comparison and read, an integer one is stored and compared as an integer (~6k instructions
-- fewer per ZADD on Redis 7.0). Exact to the microsecond until 2112 (below 2^52).
local function micros_text(t)
  return string.format('%d', math.floor(t * 1000000 + 0.5))
end

-- A score on 'timed' below this was written in seconds: by a process of layout 3 still running
-- while the store is upgraded (no time in microseconds is that small, none in seconds that
-- large). move_due rescores such an entry when it meets one.
local TIMED_SECONDS_BELOW = 1e11
-- 'timed' holds no time later than this (seconds; in the year 2255): a later one (a delay of
-- millennia) waits until then. Its score stays an exact integer below 2^53, where '%d' of a
-- larger number would overflow to a negative one, due at once and ahead of the marker "l:".
local TIMED_FIRST, TIMED_LAST = TIMED_SECONDS_BELOW / 1000000, 9.0e9

-- The score of time <at> (seconds) on 'timed': never below TIMED_SECONDS_BELOW (a time in
-- 1970, long due all the same), never above TIMED_LAST.
local function timed_score(at)
  return micros_text(math.max(TIMED_FIRST, math.min(at, TIMED_LAST)))
end

-- The time (seconds) of score <score> (text) on 'timed'.
local function timed_seconds(score)
  local n = score + 0
  if n < TIMED_SECONDS_BELOW then return n end
  return n / 1000000
end

-- Put invocation <id>, of <queue> at <priority> (nil: 'default', 0), on 'timed' at <at>
-- (seconds). Its member says whether a move to the ready queue must read its lane from the
-- record ("i:<id>") or goes to the plain list ("d:<id>", most delayed calls: no read).
-- When it is the earliest entry, an idle runner may be blocked past that instant: make one
-- (serving <queue>) look again; its claim then waits no longer than <at>.
local function add_timed(id, at, queue, priority)
  local plain = (queue == nil or queue == 'default') and (priority == nil or priority == 0)
  local score = timed_score(at)
  redis.call('ZADD', k('timed'), score, (plain and 'd:' or 'i:') .. id)
  -- Nothing in (0, at): the earliest (the marker "l:" sits at 0).
  if redis.call('ZCOUNT', k('timed'), '(0', '(' .. score) == 0 then Q.notify(queue) end
end

local DELTAS = {[1] = '1', [-1] = '-1'}

-- A change of the counts. While Q.tally is a table (claim and finish_and_claim set one), the
-- changes are summed there and written by flush_counts at the end of the script, the script
-- being atomic: a finish and the claim after it move one invocation out of 'running' and
-- another in (2 HINCRBYs, not 4), and a claim parking part of a hot key's backlog moves up to
-- CLAIM_PARK_MAX from 'registered' to 'concurrency_controlled' (2, not 2 each).
local function count(task, status, delta)
  local tally = Q.tally
  if tally then
    local field = task .. '\31' .. status
    tally[field] = (tally[field] or 0) + delta
  else
    redis.call('HINCRBY', k('counts'), task .. '\31' .. status, DELTAS[delta])
  end
end

-- Add <id> to the index of <task> ('task:<task_id>') and return the entry's id as the record
-- keeps it ('x'), and whether that id is not the caller's time <micros> (then the record keeps
-- <micros> as 'c'). The id is "<micros>-0", stored as "<micros>", when <micros> is above the
-- stream's last id; else (a registration in the same microsecond, or from a host whose clock
-- is behind or ahead of another's) the entry after the last, "<last micros>-<n>": XADD refuses
-- an id at or below the last, and '*' then gives the next one, as the server's time in
-- milliseconds is always below the last id. So the index stays in registration order, and a
-- record keeps its caller's time even when a caller whose clock ran ahead left the stream's
-- last id in the future (an emptied stream keeps it).
local function index_entry(task, micros, id)
  local key = k('task:' .. task)
  if type(redis.pcall('XADD', key, micros .. '-0', 'i', id)) == 'string' then
    return micros, false
  end
  return redis.call('XADD', key, '*', 'i', id), true
end

-- The index of the task a field of 'counts' names ("<task_id>\31<status>": the task id is
-- what comes before the last separator, as replies.count_field reads it).
local function index_of_count(field)
  return k('task:' .. string.match(field, '^(.*)\31'))
end

-- The index entry of a record's 'x' (see index_entry).
local function entry_id(x)
  if string.find(x, '-', 1, true) then return x end
  return x .. '-0'
end

-- Write the changes summed in Q.tally (see count) and stop summing.
local function flush_counts()
  local tally = Q.tally
  Q.tally = nil
  for field, delta in pairs(tally or {}) do
    if delta ~= 0 then
      redis.call('HINCRBY', k('counts'), field, DELTAS[delta] or string.format('%d', delta))
    end
  end
end

-- History entries (see 'inv:<id>' above): a status's one-letter code, the time, and the runner.
local HISTORY_CODES = {scheduled = 's', registered = 'r', concurrency_controlled = 'c',
  concurrency_controlled_final = 'x', running = 'u', retry = 'y', success = 'k', failed = 'f',
  cancelled = 'n'}

-- One history entry: code, time_text(now) and, when <runner> made it, "\31<runner>" ("\31" alone
-- when <same>: the runner of the entry before, as in the step that ends a run).
local function history_entry(status, now, runner, same)
  local entry = HISTORY_CODES[status] .. time_text(now)
  if runner == nil or runner == '' then return entry end
  return entry .. (same and '\31' or '\31' .. runner)
end
