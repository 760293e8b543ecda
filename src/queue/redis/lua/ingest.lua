-- Ingest a batch of events (of one call, or of several concurrent calls
-- coalesced by redis/batch.rs), each atomically with its idempotency key and
-- every routed job. ARGV[3] = idempotency window ms, ARGV[4] = item count,
-- then per item (and then, on a cluster, the next partition's prefix, item
-- count and items; see each_partition): idempotency key ('' = none; '=<key>' = the event id is its
-- own key, see below), event id, event JSON, the
-- JSON list of its delivery ids, job count, and per job: delivery id,
-- target label, ordering key, due ms, job.
-- Reply, per partition: reset flag, then per item 'ok'|'dup' and the
-- (first) event id.
local window_s = ARGV[3]
local window = tonumber(window_s)
local function ingest_partition(at, out)
  local reset = '0'
  if rcall('EXISTS', K_READY) == 0 then
    -- The stream exists from open() on; missing means Redis lost its data.
    rcall('XGROUP', 'CREATE', K_READY, K_GROUP, '0', 'MKSTREAM')
    reset = '1'
  end
  tinsert(out, reset)
  local items = tonumber(ARGV[at])
  -- One INCRBY for the sequence numbers of every event and delivery.
  local need, j = items, at + 1
  for _ = 1, items do
    local n = tonumber(ARGV[j + 4])
    need = need + n
    j = j + 5 + 5 * n
  end
  reserve_seq(need)
  local events, idem_log = {}, {}
  -- Whether any event id can be a key of its own (see prune.lua): one GET
  -- per batch instead of one per event with a client id.
  local pruned_ids = NOW - (tonumber(rcall('GET', K_IDEM_PRUNED)) or 0) < window
  local i = at + 1
  for _ = 1, items do
    local idem, eid, ejson, dids, njobs = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
    i = i + 5
    local k = k_event(eid)
    local first, existed = nil, nil
    if string.byte(idem, 1) == 61 then -- '='
      -- A client's own event id is its idempotency key: while the event
      -- record exists the id is a duplicate, however old (SPEC §11: an event
      -- id names one event), so no key is written. An event pruned within
      -- its window (max_events) left its id as a key (prune.lua), looked up
      -- only when there is no record and some event was pruned within the
      -- window; past the window a pruned id is free again.
      existed = rcall('EXISTS', k) == 1
      if existed then
        first = eid
      elseif pruned_ids then
        local seen, id = split_stamp(rcall('GET', P .. ':idem:' .. string.sub(idem, 2)))
        if seen and NOW - seen < window then first = id end
      end
    elseif idem ~= '' then
      -- The key holds "<ingest ms>|<event id>". The window is judged on the
      -- queue's clock (like the embedded backend); the real TTL only bounds
      -- memory. A key older than the window on the clock is taken over.
      local k = P .. ':idem:' .. idem
      local old = rcall('SET', k, NOW_S .. '|' .. eid, 'NX', 'PX', window_s, 'GET')
      if old then
        local seen, id = split_stamp(old)
        if not seen then
          -- Written by an older hookyard (the event id alone): only its TTL
          -- tells its age, and it is still there, so it is within the window.
          first = old
        elseif NOW - seen < window then
          first = id
        else
          rcall('SET', k, NOW_S .. '|' .. eid, 'PX', window_s)
        end
      end
      if not first then tinsert(idem_log, NOW_S .. '|' .. idem) end
    end
    if not first and existed == nil and rcall('EXISTS', k) == 1 then
      -- An event id names one event: a record that exists is never
      -- overwritten (a client id with idempotency off, window 0).
      first = eid
    end
    if first then
      tinsert(out, 'dup')
      tinsert(out, first)
      i = i + 5 * njobs
    else
      -- A new event: its delivery ids (new ULIDs) cannot exist either.
      local seq = next_seq()
      for _ = 1, njobs do
        create_job(ARGV[i], eid, ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4], true)
        i = i + 5
      end
      -- The event lists its first deliveries in its own hash ('ds', the list
      -- made by the caller), so ingestion writes no per-delivery list.
      if njobs > 0 then
        rcall('HSET', k, 'json', ejson, 'at', NOW_S, 'ds', dids)
      else
        rcall('HSET', k, 'json', ejson, 'at', NOW_S)
      end
      local ne, no = #events, #out
      events[ne + 1], events[ne + 2] = seq, eid
      out[no + 1], out[no + 2] = 'ok', eid
    end
  end
  if #events > 0 then vcall('ZADD', K_EVENTS, events, 2) end
  if #idem_log > 0 then vcall('RPUSH', K_IDEM, idem_log, 1) end
  return i
end
-- The ARGV index after the share starting at `at` (its item count).
local function skip_items(at)
  local j = at + 1
  for _ = 1, tonumber(ARGV[at]) do j = j + 5 + 5 * tonumber(ARGV[j + 4]) end
  return j
end
return each_partition(4, ingest_partition, skip_items)
