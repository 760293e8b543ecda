-- Shared prelude of every hookyard Redis script (prepended at load time).
-- KEYS = the partition's fixed keys (below), ARGV[1] = the partition's key
-- prefix, ARGV[2] = "now" in unix milliseconds (the queue's
-- clock, so tests can move time without sleeping). Key layout: see the `//!`
-- header of src/queue/redis.rs.
--
-- Cost matters: every redis.call has a fixed overhead, so per-job work is
-- kept to the commands that must be per job (idempotency key, event hash
-- and XADD at ingestion, the delivery record from the first lease on, lease
-- checks) and index/counter updates are
-- buffered in Lua tables and written once per script with variadic
-- commands (`flush`).
-- Globals looked up once (a global lookup per call adds up per job).
local rcall, tinsert = redis.call, table.insert
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
-- "now" as given, for writing: Lua's own number-to-string conversion (what
-- a number argument of redis.call goes through) costs about as much as a
-- small command, so values that are written are kept as strings.
local NOW_S = ARGV[2]
-- The partition's fixed keys come declared, in the order of KEY_NAMES in
-- src/queue/redis/partition.rs, so a Redis Cluster sends the script to the
-- master of their slot. One server declares only the stream (the rest are
-- made from P, as always): 12 arguments less per call is 4% of the
-- daemon's work per request there (bench/daemon-ir). Per-record keys (a delivery, an event, a FIFO
-- line) are made from P, which carries the same hash tag (on a cluster
-- `<p>:{<tag>}`), so they are in that slot too.
local K_READY = KEYS[1]
local K_GROUP = P .. ':workers'
local K_DELAYED = KEYS[2] or P .. ':delayed'
local K_DEAD = KEYS[3] or P .. ':dead'
local K_PENDING = KEYS[4] or P .. ':pending'
local K_UNFINISHED = KEYS[5] or P .. ':unfinished'
local K_COUNTS = KEYS[6] or P .. ':counts'
local K_EVENTS = KEYS[7] or P .. ':events'
local K_DELIVERIES = KEYS[8] or P .. ':deliveries'
local K_SEQ = KEYS[9] or P .. ':seq'
local K_IDEM = KEYS[10] or P .. ':idem'
-- The ingest ms of the latest event pruned within its idempotency window
-- (prune.lua): until the window has run from then, some event id may be
-- a key of its own (ingest.lua looks such keys up only until then).
local K_IDEM_PRUNED = KEYS[11] or P .. ':idempruned'
-- Queued deliveries whose record is not written yet (see create_job):
-- delivery id -> "<target label>\n<event id>".
local K_QUEUED = KEYS[12] or P .. ':dq'
-- Dead letters per target label (stats.lua), kept by dead.lua, redrive.lua,
-- create_job (a dead letter retried by hand) and prune.lua; deadby.lua
-- counts them once for a store written before the count was kept.
local K_DEAD_BY = KEYS[13] or P .. ':deadby'
local function k_delivery(did) return P .. ':d:' .. did end
local function k_attempts(did) return P .. ':da:' .. did end
local function k_event(eid) return P .. ':ev:' .. eid end
local function k_event_deliveries(eid) return P .. ':evd:' .. eid end
local function k_fifo(okey) return P .. ':fifo:' .. okey end

-- Count a delivery of `target` in or out of the dead-letter list.
local function count_dead(target, delta)
  if target and target ~= '' and rcall('HINCRBY', K_DEAD_BY, target, delta) <= 0 then
    rcall('HDEL', K_DEAD_BY, target)
  end
end

-- Buffered writes, applied by flush().
local B_PENDING = {}      -- target label -> delta of unfinished jobs
local B_UNFIN_ADD = {}    -- flat score, member pairs for K_UNFINISHED
local B_UNFIN_REM = {}    -- members to remove from K_UNFINISHED
local B_DELIVERIES = {}   -- flat score, member pairs for K_DELIVERIES
local B_ACK = {}          -- stream entries to XACK + XDEL
local B_QUEUED = {}       -- flat delivery id, value pairs for K_QUEUED
local B_UNQUEUED = {}     -- delivery ids to remove from K_QUEUED

-- Split "<ms>|<rest>" (idempotency keys and their log): ms as a number
-- and rest, or nil when there is no '|'.
local function split_stamp(s)
  local sep = s and string.find(s, '|', 1, true)
  if not sep then return nil end
  return tonumber(string.sub(s, 1, sep - 1)) or 0, string.sub(s, sep + 1)
end

-- One variadic command over a long list, in chunks (Lua's unpack limit).
local function vcall(cmd, key, list, stride, extra)
  local chunk = 4000 - (4000 % stride)
  if not extra and #list <= chunk then
    -- The usual case: one call straight from the list, no copy.
    rcall(cmd, key, unpack(list))
    return
  end
  for i = 1, #list, chunk do
    local args = {}
    if extra then for _, a in ipairs(extra) do tinsert(args, a) end end
    for j = i, math.min(i + chunk - 1, #list) do tinsert(args, list[j]) end
    rcall(cmd, key, unpack(args))
  end
end

local function flush()
  for target, delta in pairs(B_PENDING) do
    if delta ~= 0 and rcall('HINCRBY', K_PENDING, target, delta) <= 0 then
      rcall('HDEL', K_PENDING, target)
    end
  end
  -- Removals first: a delivery finished and enqueued again in the same
  -- script (manual retry) must end up counted.
  if #B_UNFIN_REM > 0 then vcall('ZREM', K_UNFINISHED, B_UNFIN_REM, 1) end
  if #B_UNFIN_ADD > 0 then vcall('ZADD', K_UNFINISHED, B_UNFIN_ADD, 2) end
  if #B_DELIVERIES > 0 then vcall('ZADD', K_DELIVERIES, B_DELIVERIES, 2) end
  if #B_QUEUED > 0 then vcall('HSET', K_QUEUED, B_QUEUED, 2) end
  if #B_UNQUEUED > 0 then vcall('HDEL', K_QUEUED, B_UNQUEUED, 1) end
  if #B_ACK > 0 then
    vcall('XACK', K_READY, B_ACK, 1, {K_GROUP})
    vcall('XDEL', K_READY, B_ACK, 1)
  end
end

-- Sequence numbers (history order) are reserved once per script. On a
-- cluster (a partition's prefix carries a hash tag, `{`) they never fall
-- below the server's clock in microseconds (TIME) since 2023-11-14 (unix
-- second 1.7e9): every partition counts its own, and merging the
-- partitions' indexes by sequence then gives ingest order
-- (redis/index.rs). One server counts from 1 as it always did: its one
-- index is in order anyway, and short numbers are cheaper to write and
-- parse per event (about 2% of an ingestion's Redis instructions).
local SEQ_NEXT, SEQ_LAST = 0, -1
local TIMED_SEQ = string.find(P, '{', 1, true) ~= nil
local function reserve_seq(n)
  if n < 1 then n = 1 end
  if TIMED_SEQ then
    local t = rcall('TIME')
    local floor = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
    local last = tonumber(rcall('GET', K_SEQ)) or 0
    if last < floor then last = floor end
    SEQ_NEXT, SEQ_LAST = last + 1, last + n
    rcall('SET', K_SEQ, string.format('%d', SEQ_LAST))
  else
    SEQ_LAST = rcall('INCRBY', K_SEQ, n)
    SEQ_NEXT = SEQ_LAST - n + 1
  end
end
-- The next sequence number, as the string that is written.
local function next_seq()
  if SEQ_NEXT > SEQ_LAST then reserve_seq(16) end
  local s = SEQ_NEXT
  SEQ_NEXT = SEQ_NEXT + 1
  return string.format('%d', s)
end

-- A runnable job goes into the stream carrying everything a worker needs
-- (delivery id, stored job, attempts made, orphaned_since, event id), so
-- leasing reads no other key but the event. `target` is given for a job
-- whose delivery record is not written yet: the entry then carries it
-- ('t'), and the record is written from the entry when it is leased; and
-- its enqueue time ('q'), which stands in for its K_UNFINISHED member
-- while the entry is in the stream (see create_job).
local function push_ready(did, job, n, orph, eid, target)
  if target then
    -- A fresh job: no attempts, not orphaned ('n' and 'o' read as absent).
    rcall('XADD', K_READY, '*', 'd', did, 'j', job, 'e', eid, 't', target, 'q', NOW_S)
  else
    rcall('XADD', K_READY, '*', 'd', did, 'j', job, 'n', n, 'o', orph, 'e', eid)
  end
end

-- Into the stream, its fields read from the delivery record (delayed jobs
-- that became due, the next head of a FIFO line, redriven jobs).
local function push_from_record(did)
  local d = rcall('HMGET', k_delivery(did), 'job', 'n', 'orph', 'ev')
  if d[1] then push_ready(did, d[1], d[2] or '0', d[3] or '', d[4] or '') end
end

-- Make a job runnable: into the stream now, or into the delayed set until due.
local function place(did, due, job, n, orph, eid)
  if due > NOW then
    rcall('ZADD', K_DELAYED, string.format('%d', due), did)
  elseif job then
    push_ready(did, job, n, orph, eid)
  else
    push_from_record(did)
  end
end

-- Count a job as unfinished and make it runnable, or park it behind the
-- head of its FIFO line (only a line's head is ever in the stream or the
-- delayed set). `job` may be nil (then read from the record when placed).
local function activate(did, target, okey, due, job, n, orph, eid)
  B_PENDING[target] = (B_PENDING[target] or 0) + 1
  tinsert(B_UNFIN_ADD, NOW_S)
  tinsert(B_UNFIN_ADD, did)
  if okey ~= '' then
    if rcall('RPUSH', k_fifo(okey), did) > 1 then
      rcall('HINCRBY', K_COUNTS, 'fifo_waiting', 1)
      return
    end
  end
  place(did, due, job, n, orph, eid)
end

-- A delivery's state: its record's, 'pending' while it is queued without
-- its record (see create_job), nil when unknown.
local function delivery_state(did)
  local st = rcall('HGET', k_delivery(did), 'st')
  if not st and rcall('HEXISTS', K_QUEUED, did) == 1 then st = 'pending' end
  return st or nil
end

-- Write a new delivery record and queue its job; the caller records the
-- delivery id under its event. Returns true when a job was queued, and
-- whether the record is new. Enqueueing a delivery id that is still
-- pending does nothing (idempotent); enqueueing a finished one (manual
-- retry) makes it pending again and keeps its attempt history. `fresh`:
-- the event itself is new, so its delivery ids (new ULIDs) cannot exist.
--
-- A fresh job that goes straight into the stream gets no record here: it
-- is listed in K_QUEUED, its entry carries the target, and emit() writes
-- the record when the job is first leased. Readers take a delivery that
-- is in K_QUEUED as pending with no attempts. This keeps ingestion to the
-- writes that make the event durable (one key less per job); every later
-- step finds the record in place. Such a job joins K_UNFINISHED only if it
-- leaves the stream unfinished (keep_unfinished): while it is in the
-- stream, its entry is the oldest-age clue (stats.lua), so ingestion adds
-- no sorted-set member per job either.
local function create_job(did, eid, target, okey, due, job, fresh)
  local st = nil
  if not fresh then st = delivery_state(did) end
  if st == 'pending' then return false, false end
  if st then
    -- A delivery id keeps its target, so the new one is the old one.
    if rcall('ZREM', K_DEAD, did) == 1 then count_dead(target, -1) end
    rcall('HSET', k_delivery(did), 'ev', eid, 'tg', target, 'ok', okey, 'nb', string.format('%d', due),
      'job', job, 'st', 'pending', 'rs', '', 'n', '0', 'orph', '')
  else
    -- A new record holds only what is set: an absent ordering key, due
    -- time, reason, attempt count or orphaned_since reads as empty or 0
    -- (every field costs, and most jobs have none of these).
    local nd = #B_DELIVERIES
    B_DELIVERIES[nd + 1], B_DELIVERIES[nd + 2] = next_seq(), did
    if fresh and okey == '' and due <= NOW then
      local nq = #B_QUEUED
      B_QUEUED[nq + 1], B_QUEUED[nq + 2] = did, target .. '\n' .. eid
      B_PENDING[target] = (B_PENDING[target] or 0) + 1
      push_ready(did, job, nil, nil, eid, target)
      return true, true
    end
    local k = k_delivery(did)
    if okey == '' and due == 0 then
      rcall('HSET', k, 'ev', eid, 'tg', target, 'job', job, 'st', 'pending')
    else
      rcall('HSET', k, 'ev', eid, 'tg', target, 'job', job, 'st', 'pending',
        'ok', okey, 'nb', string.format('%d', due))
    end
  end
  activate(did, target, okey, due, job, '0', '', eid)
  return true, not st
end

-- create_job for an event that already exists: list the delivery under the
-- event (deliveries created at ingestion are listed in the event hash
-- instead, see ingest.lua).
local function add_job(did, eid, target, okey, due, job)
  local _, new = create_job(did, eid, target, okey, due, job, false)
  if new then rcall('RPUSH', k_event_deliveries(eid), did) end
end

-- A job left the queue for good (succeeded, test, dead letter): uncount it
-- and release the next job of its FIFO line. (Whether an event still has
-- unfinished jobs is read from its delivery records when pruning, so
-- nothing per event is written here.)
local function finish_known(did, target, okey)
  if target and target ~= '' then
    B_PENDING[target] = (B_PENDING[target] or 0) - 1
  end
  tinsert(B_UNFIN_REM, did)
  if okey and okey ~= '' then
    local line = k_fifo(okey)
    if rcall('LINDEX', line, 0) == did then
      rcall('LPOP', line)
      local head = rcall('LINDEX', line, 0)
      if head then
        rcall('HINCRBY', K_COUNTS, 'fifo_waiting', -1)
        place(head, tonumber(rcall('HGET', k_delivery(head), 'nb')) or 0)
      end
    elseif rcall('LREM', line, 1, did) > 0 then
      rcall('HINCRBY', K_COUNTS, 'fifo_waiting', -1)
    end
  end
end

local function finish(did)
  local d = rcall('HMGET', k_delivery(did), 'tg', 'ok')
  finish_known(did, d[1], d[2])
end

-- A lease handle is "<stream entry id>/<delivery count>". It is held when
-- the entry is pending for this consumer with that count (a reclaim by
-- XAUTOCLAIM bumps the count, so an old handle of the same process is
-- refused too). Returns the entry id or nil.
local function held(lease, consumer)
  local sep = string.find(lease, '/', 1, true)
  if not sep then return nil end
  local entry = string.sub(lease, 1, sep - 1)
  local count = tonumber(string.sub(lease, sep + 1))
  local pe = redis.pcall('XPENDING', K_READY, K_GROUP, entry, entry, 1)
  if type(pe) ~= 'table' or pe.err or #pe == 0 then return nil end
  if pe[1][2] ~= consumer or tonumber(pe[1][4]) ~= count then return nil end
  return entry
end

-- Compare two stream entry ids ("<ms>-<seq>"): true when a < b.
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am) or 0, tonumber(as) or 0, tonumber(bm) or 0, tonumber(bs) or 0
  return am < bm or (am == bm and as < bs)
end

-- held() for many leases of one consumer with a single XPENDING over the
-- range of their entries (the consumer's pending list between them is
-- bounded by what the process has leased). Returns a table lease -> entry
-- id for the leases that are held.
local function held_many(leases, consumer)
  local want, lo, hi = {}, nil, nil
  for _, lease in ipairs(leases) do
    local sep = string.find(lease, '/', 1, true)
    if sep then
      local entry = string.sub(lease, 1, sep - 1)
      if string.match(entry, '^%d+-%d+$') then
        want[lease] = entry
        if not lo or id_less(entry, lo) then lo = entry end
        if not hi or id_less(hi, entry) then hi = entry end
      end
    end
  end
  local out = {}
  if not lo then return out end
  local pe = redis.pcall('XPENDING', K_READY, K_GROUP, lo, hi, 1000000, consumer)
  if type(pe) ~= 'table' or pe.err then return out end
  local count = {}
  for _, p in ipairs(pe) do count[p[1]] = tonumber(p[4]) end
  for lease, entry in pairs(want) do
    local sep = string.find(lease, '/', 1, true)
    if count[entry] == tonumber(string.sub(lease, sep + 1)) then out[lease] = entry end
  end
  return out
end

-- Remove a leased entry from the stream for good (at flush).
local function release(entry)
  tinsert(B_ACK, entry)
end

-- Field value of a stream entry's flat field list.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- A leased job leaves the stream without finishing (retry, defer): one
-- queued at ingestion (its entry carries 'q', see push_ready) is counted
-- in K_UNFINISHED from here on, under its enqueue time.
local function keep_unfinished(entry, did)
  local e = rcall('XRANGE', K_READY, entry, entry)[1]
  local q = e and field(e[2], 'q')
  if q then rcall('ZADD', K_UNFINISHED, 'NX', q, did) end
end

-- Event JSON by id, read once per script (the jobs of one event leased
-- together share it).
local EVENT_JSON = {}
local function event_json(eid)
  if not eid or eid == '' then return '' end
  local j = EVENT_JSON[eid]
  if not j then
    j = rcall('HGET', k_event(eid), 'json') or ''
    EVENT_JSON[eid] = j
  end
  return j
end

-- Append one leased job to a flat reply: entry, delivery count, delivery
-- id, stored job, attempts, orphaned_since, event JSON ('' when the entry
-- does not name its event: the worker reads it then). The job travels in
-- the entry; entries written by an older hookyard carry only the delivery
-- id, so the record is read then. Entries without a job anywhere (history
-- pruned) are dropped from the stream.
local function emit(out, entry, count, fields)
  local did = field(fields, 'd')
  local job, n, orph = field(fields, 'j'), field(fields, 'n'), field(fields, 'o')
  if did and not job then
    local d = rcall('HMGET', k_delivery(did), 'job', 'n', 'orph')
    job, n, orph = d[1], d[2], d[3]
  end
  if not did or not job then
    release(entry)
    return 0
  end
  local target = field(fields, 't')
  if target then
    -- First lease of a job queued without its record (see create_job).
    -- A reclaimed entry writes the same values again: every change to
    -- the record after this removes the entry in the same step.
    rcall('HSET', k_delivery(did), 'ev', field(fields, 'e') or '', 'tg', target,
      'job', job, 'st', 'pending')
    tinsert(B_UNQUEUED, did)
  end
  tinsert(out, entry)
  tinsert(out, tostring(count))
  tinsert(out, did)
  tinsert(out, job)
  tinsert(out, n or '0')
  tinsert(out, orph or '')
  tinsert(out, event_json(field(fields, 'e')))
  return 1
end

-- The batched scripts (ingest, complete, lease) carry, on a cluster, the
-- work of several partitions that live on one master (redis/batch.rs,
-- redis/nodes.rs). KEYS are the first partition's: Redis (7.0) refuses
-- declared keys of several slots in one call even with the script's
-- `allow-cross-slot-keys` flag, while the flag lets the script reach keys
-- of other slots on the same master, which is where the later partitions
-- are (named by their prefix in ARGV; a key that is not on this master is
-- still refused). use_partition(prefix) turns every key name and buffer
-- to that partition; flush() the previous one's buffers first.
local function use_partition(prefix)
  P = prefix
  K_READY, K_GROUP, K_DELAYED, K_DEAD = P .. ':ready', P .. ':workers', P .. ':delayed', P .. ':dead'
  K_PENDING, K_UNFINISHED, K_COUNTS = P .. ':pending', P .. ':unfinished', P .. ':counts'
  K_EVENTS, K_DELIVERIES, K_SEQ, K_IDEM = P .. ':events', P .. ':deliveries', P .. ':seq', P .. ':idem'
  K_IDEM_PRUNED, K_QUEUED, K_DEAD_BY = P .. ':idempruned', P .. ':dq', P .. ':deadby'
  B_PENDING, B_UNFIN_ADD, B_UNFIN_REM, B_DELIVERIES = {}, {}, {}, {}
  B_ACK, B_QUEUED, B_UNQUEUED = {}, {}, {}
  SEQ_NEXT, SEQ_LAST = 0, -1
  TIMED_SEQ = string.find(P, '{', 1, true) ~= nil
end

-- Run `group(first, out)` for each partition's share of a batched call
-- (after checking that every partition is on this master, see below):
-- ARGV[1] is the first partition's prefix and ARGV[first] starts its share
-- (an item count and items, or arguments of its own); after it come the
-- next partition's prefix and share, and so on. `group` returns the ARGV
-- index after its share; each partition's buffers are flushed before the
-- next begins.
local function each_partition(first, group, skip)
  -- Every later partition must be on this master before anything is
  -- written: a map read before slots moved would otherwise commit the
  -- first partitions and fail at a later one. Reading a key that is not
  -- here fails, so the call fails whole, and the caller reads the map
  -- again (redis/nodes.rs). `skip(at)` is the index after a share. Only
  -- a cluster's calls (whose prefixes carry a hash tag) can hold several
  -- partitions; one server skips the walk, which costs 2% of its work.
  local j = TIMED_SEQ and skip(first) or #ARGV + 1
  while j <= #ARGV do
    local found = redis.pcall('EXISTS', ARGV[j] .. ':ready')
    if type(found) == 'table' and found.err then
      return redis.error_reply('partition not on this master (non local key): ' .. ARGV[j])
    end
    j = skip(j + 1)
  end
  local out, i = {}, first
  while true do
    i = group(i, out)
    flush()
    if i > #ARGV then return out end
    use_partition(ARGV[i])
    i = i + 1
  end
end
