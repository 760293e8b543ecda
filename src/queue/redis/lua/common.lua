-- Shared prelude of every hookyard Redis script (prepended at load time).
-- ARGV[1] = key prefix, ARGV[2] = "now" in unix milliseconds (the queue's
-- clock, so tests can move time without sleeping). Key layout: see the `//!`
-- header of src/queue/redis.rs.
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local K_READY = P .. ':ready'
local K_GROUP = P .. ':workers'
local K_DELAYED = P .. ':delayed'
local K_DEAD = P .. ':dead'
local K_PENDING = P .. ':pending'
local K_UNFINISHED = P .. ':unfinished'
local K_COUNTS = P .. ':counts'
local K_EVENTS = P .. ':events'
local K_DELIVERIES = P .. ':deliveries'
local K_SEQ = P .. ':seq'
local K_IDEM = P .. ':idem'
local function k_delivery(did) return P .. ':d:' .. did end
local function k_attempts(did) return P .. ':da:' .. did end
local function k_event(eid) return P .. ':ev:' .. eid end
local function k_event_deliveries(eid) return P .. ':evd:' .. eid end
local function k_fifo(okey) return P .. ':fifo:' .. okey end

-- Make a job runnable: into the stream now, or into the delayed set until due.
local function place(did, due)
  if due > NOW then
    redis.call('ZADD', K_DELAYED, due, did)
  else
    redis.call('XADD', K_READY, '*', 'd', did)
  end
end

-- Count a job as unfinished and make it runnable, or park it behind the
-- head of its FIFO line (only a line's head is ever in the stream or the
-- delayed set).
local function activate(did, eid, target, okey, due)
  redis.call('HINCRBY', K_PENDING, target, 1)
  redis.call('ZADD', K_UNFINISHED, NOW, did)
  redis.call('HINCRBY', k_event(eid), 'open', 1)
  if okey ~= '' then
    if redis.call('RPUSH', k_fifo(okey), did) > 1 then
      redis.call('HINCRBY', K_COUNTS, 'fifo_waiting', 1)
      return
    end
  end
  place(did, due)
end

-- Write a delivery record and queue its job. Enqueueing a delivery id that
-- is still pending does nothing (idempotent); enqueueing a finished one
-- (manual retry) makes it pending again and keeps its attempt history.
local function create_job(did, eid, target, okey, due, job)
  local k = k_delivery(did)
  local st = redis.call('HGET', k, 'st')
  if st == 'pending' then return end
  if st then
    redis.call('ZREM', K_DEAD, did)
    redis.call('HSET', k, 'ev', eid, 'tg', target, 'ok', okey, 'nb', due, 'job', job,
      'st', 'pending', 'rs', '', 'n', 0, 'orph', '')
  else
    local seq = redis.call('INCR', K_SEQ)
    redis.call('HSET', k, 'ev', eid, 'tg', target, 'ok', okey, 'nb', due, 'job', job,
      'st', 'pending', 'rs', '', 'n', 0, 'orph', '', 'seq', seq)
    redis.call('RPUSH', k_event_deliveries(eid), did)
    redis.call('ZADD', K_DELIVERIES, seq, did)
  end
  activate(did, eid, target, okey, due)
end

-- A job left the queue for good (succeeded, test, dead letter): uncount it
-- and release the next job of its FIFO line.
local function finish(did)
  local d = redis.call('HMGET', k_delivery(did), 'ev', 'tg', 'ok')
  local eid, target, okey = d[1], d[2], d[3]
  if target then
    if redis.call('HINCRBY', K_PENDING, target, -1) <= 0 then
      redis.call('HDEL', K_PENDING, target)
    end
  end
  redis.call('ZREM', K_UNFINISHED, did)
  if eid then redis.call('HINCRBY', k_event(eid), 'open', -1) end
  if okey and okey ~= '' then
    local line = k_fifo(okey)
    if redis.call('LINDEX', line, 0) == did then
      redis.call('LPOP', line)
      local head = redis.call('LINDEX', line, 0)
      if head then
        redis.call('HINCRBY', K_COUNTS, 'fifo_waiting', -1)
        place(head, tonumber(redis.call('HGET', k_delivery(head), 'nb')) or 0)
      end
    elseif redis.call('LREM', line, 1, did) > 0 then
      redis.call('HINCRBY', K_COUNTS, 'fifo_waiting', -1)
    end
  end
end

-- A lease handle is "<stream entry id>/<delivery count>". It is held when
-- the entry is pending for this consumer with that count (a reclaim by
-- XAUTOCLAIM bumps the count, so an old handle of the same process is
-- refused too) and the entry is the job's. Returns the entry id or nil.
local function held(lease, consumer, did)
  local sep = string.find(lease, '/', 1, true)
  if not sep then return nil end
  local entry = string.sub(lease, 1, sep - 1)
  local count = tonumber(string.sub(lease, sep + 1))
  local pe = redis.pcall('XPENDING', K_READY, K_GROUP, entry, entry, 1)
  if type(pe) ~= 'table' or pe.err or #pe == 0 then return nil end
  if pe[1][2] ~= consumer or tonumber(pe[1][4]) ~= count then return nil end
  local e = redis.call('XRANGE', K_READY, entry, entry)
  if #e == 0 or e[1][2][2] ~= did then return nil end
  return entry
end

-- Remove a leased entry from the stream for good.
local function release(entry)
  redis.call('XACK', K_READY, K_GROUP, entry)
  redis.call('XDEL', K_READY, entry)
end

-- Append one leased job to a flat reply: entry, delivery count, delivery
-- id, stored job, attempts, orphaned_since. Entries whose delivery record
-- is gone (pruned) are dropped from the stream instead.
local function emit(out, entry, count, did)
  local d = redis.call('HMGET', k_delivery(did), 'job', 'n', 'orph')
  if not d[1] then
    release(entry)
    return 0
  end
  table.insert(out, entry)
  table.insert(out, tostring(count))
  table.insert(out, did)
  table.insert(out, d[1])
  table.insert(out, d[2] or '0')
  table.insert(out, d[3] or '')
  return 1
end

-- Field value of a stream entry's flat field list.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
