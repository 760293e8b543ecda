-- Ingest a batch of events, each atomically with its idempotency key and
-- every routed job. ARGV[3] = idempotency window ms, ARGV[4] = item count,
-- then per item: idempotency key ('' = none), event id, event JSON, job
-- count, and per job: delivery id, target label, ordering key, due ms, job.
-- Reply: reset flag, then per item 'ok'|'dup' and the (first) event id.
local reset = '0'
if redis.call('EXISTS', K_READY) == 0 then
  -- The stream exists from open() on; missing means Redis lost its data.
  redis.call('XGROUP', 'CREATE', K_READY, K_GROUP, '0', 'MKSTREAM')
  reset = '1'
end
local out = {reset}
local window = tonumber(ARGV[3])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local idem, eid, ejson, njobs = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  local first = nil
  if idem ~= '' then
    -- The key holds "<ingest ms>|<event id>". The window is judged on the
    -- queue's clock (like the embedded backend); the real TTL only bounds
    -- memory. A key older than the window on the clock is taken over.
    local k = P .. ':idem:' .. idem
    local old = redis.call('SET', k, NOW .. '|' .. eid, 'NX', 'PX', window, 'GET')
    if old then
      local sep = string.find(old, '|', 1, true)
      local at = sep and tonumber(string.sub(old, 1, sep - 1)) or 0
      if sep and NOW - at < window then
        first = string.sub(old, sep + 1)
      else
        redis.call('SET', k, NOW .. '|' .. eid, 'PX', window)
      end
    end
    if not first then redis.call('ZADD', K_IDEM, NOW, idem) end
  end
  if first then
    table.insert(out, 'dup')
    table.insert(out, first)
    i = i + 5 * njobs
  else
    local seq = redis.call('INCR', K_SEQ)
    redis.call('HSET', k_event(eid), 'json', ejson, 'at', NOW, 'seq', seq)
    redis.call('ZADD', K_EVENTS, seq, eid)
    for _ = 1, njobs do
      create_job(ARGV[i], eid, ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4])
      i = i + 5
    end
    table.insert(out, 'ok')
    table.insert(out, eid)
  end
end
return out
