-- Drop the oldest events (and their deliveries, attempts and dead letters)
-- older than the retention or beyond max_events, skipping events that still
-- have unfinished jobs, and expired idempotency keys. ARGV[3] = retention
-- ms, ARGV[4] = max events, ARGV[5] = offset (skipped events at the front),
-- ARGV[6] = batch size, ARGV[7] = idempotency window ms.
-- Reply: removed, new offset, done flag.
local cut = NOW - tonumber(ARGV[3])
local max_events = tonumber(ARGV[4])
local offset = tonumber(ARGV[5])
local batch = tonumber(ARGV[6])
-- Idempotency keys older than the window (ARGV[7] ms) go first, a batch
-- per call; their real TTL may have dropped the key already.
local keys = redis.call('ZRANGEBYSCORE', K_IDEM, '-inf', '(' .. (NOW - tonumber(ARGV[7])), 'LIMIT', 0, batch)
if #keys > 0 then
  for _, idem in ipairs(keys) do
    redis.call('DEL', P .. ':idem:' .. idem)
    redis.call('ZREM', K_IDEM, idem)
  end
  return {#keys, offset, 0}
end
local total = redis.call('ZCARD', K_EVENTS)
local ids = redis.call('ZRANGE', K_EVENTS, offset, offset + batch - 1)
local removed = 0
local done = 1
if #ids == batch then done = 0 end
for _, eid in ipairs(ids) do
  local e = redis.call('HMGET', k_event(eid), 'at', 'open')
  local at = tonumber(e[1]) or 0
  local open = tonumber(e[2]) or 0
  if at >= cut and (total - removed) <= max_events then
    done = 1
    break
  end
  if open > 0 then
    offset = offset + 1
  else
    for _, did in ipairs(redis.call('LRANGE', k_event_deliveries(eid), 0, -1)) do
      redis.call('DEL', k_delivery(did), k_attempts(did))
      redis.call('ZREM', K_DELIVERIES, did)
      redis.call('ZREM', K_DEAD, did)
    end
    redis.call('DEL', k_event(eid), k_event_deliveries(eid))
    redis.call('ZREM', K_EVENTS, eid)
    removed = removed + 1
  end
end
return {removed, offset, done}
