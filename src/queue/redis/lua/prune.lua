-- Drop expired idempotency keys, then the oldest events (and their
-- deliveries, attempts and dead letters) older than the retention or
-- beyond max_events, skipping events that still have unfinished jobs.
-- ARGV[3] = retention ms, ARGV[4] = max events, ARGV[5] = offset (skipped
-- events at the front), ARGV[6] = batch size, ARGV[7] = idempotency window
-- ms, ARGV[8] = the idempotency scope of event ids, ARGV[9] = sequence cut
-- (on a cluster: events at or below it are beyond max events, counted over
-- all partitions by redis/history.rs; -1 = none). Reply: removed, new
-- offset, done flag.
local cut = NOW - tonumber(ARGV[3])
local max_events = tonumber(ARGV[4])
local offset = tonumber(ARGV[5])
local batch = tonumber(ARGV[6])
-- Idempotency keys: K_IDEM logs "<ms>|<key>" in ingest order; a batch of
-- entries older than the window per call. A key taken over later has a
-- newer entry and stays; a key whose real TTL ran out is already gone.
local key_cut = NOW - tonumber(ARGV[7])
local log = rcall('LRANGE', K_IDEM, 0, batch - 1)
local popped, expired = 0, 0
for _, entry in ipairs(log) do
  local at, key = split_stamp(entry)
  if (at or 0) >= key_cut then break end
  popped = popped + 1
  if key then
    local k = P .. ':idem:' .. key
    local v = rcall('GET', k)
    if not v or (split_stamp(v) or 0) < key_cut then
      rcall('DEL', k)
      expired = expired + 1
    end
  end
end
if popped > 0 then
  rcall('LTRIM', K_IDEM, popped, -1)
  return {expired, offset, 0}
end
local total = rcall('ZCARD', K_EVENTS)
local seq_cut = tonumber(ARGV[9]) or -1
local scored = rcall('ZRANGE', K_EVENTS, offset, offset + batch - 1, 'WITHSCORES')
local removed = 0
local done = 1
if #scored == 2 * batch then done = 0 end
for n = 1, #scored, 2 do
  local eid, seq = scored[n], tonumber(scored[n + 1])
  local e = rcall('HMGET', k_event(eid), 'at', 'ds')
  local at = tonumber(e[1]) or 0
  if at >= cut and (total - removed) <= max_events and seq > seq_cut then
    done = 1
    break
  end
  local dids = rcall('LRANGE', k_event_deliveries(eid), 0, -1)
  if e[2] then
    for _, did in ipairs(cjson.decode(e[2])) do tinsert(dids, did) end
  end
  -- An event with a job still pending (queued, delayed, leased, waiting
  -- in a FIFO line) stays with all its history.
  local open = false
  for _, did in ipairs(dids) do
    if delivery_state(did) == 'pending' then
      open = true
      break
    end
  end
  if open then
    offset = offset + 1
  else
    for _, did in ipairs(dids) do
      if rcall('ZREM', K_DEAD, did) == 1 then
        count_dead(rcall('HGET', k_delivery(did), 'tg'), -1)
      end
      rcall('DEL', k_delivery(did), k_attempts(did))
      rcall('ZREM', K_DELIVERIES, did)
    end
    rcall('DEL', k_event(eid), k_event_deliveries(eid))
    rcall('ZREM', K_EVENTS, eid)
    -- An event id doubles as its idempotency key through the record
    -- (ingest.lua); one pruned within the window keeps its id as a key
    -- for the rest of it.
    local window = tonumber(ARGV[7])
    if NOW - at < window and e[1] then
      local key = ARGV[8] .. ':' .. eid
      rcall('SET', P .. ':idem:' .. key, e[1] .. '|' .. eid,
        'PX', string.format('%d', window - (NOW - at)))
      rcall('RPUSH', K_IDEM, e[1] .. '|' .. key)
      if at > (tonumber(rcall('GET', K_IDEM_PRUNED)) or 0) then
        rcall('SET', K_IDEM_PRUNED, e[1])
      end
    end
    removed = removed + 1
  end
end
return {removed, offset, done}
