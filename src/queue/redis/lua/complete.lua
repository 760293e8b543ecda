-- Finish jobs as succeeded/test and, in the same step, enqueue each one's
-- next workflow step. Concurrent completions of one process are coalesced
-- into one call (see redis/batch.rs). ARGV[3] = consumer, ARGV[4] = item
-- count, then per item: lease, delivery id, event id, target label,
-- ordering key, state, attempt JSON ('' = none), '1' when a next job
-- follows in the 6 next arguments (delivery id, event id, target, ordering
-- key, due ms, job) else '0'. Reply: per item 'ok' | 'lost'.
local consumer = ARGV[3]
local out, done = {}, {}
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local lease, did, eid, target, okey, state, attempt, has_next =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  local entry = held(lease, consumer)
  -- The same lease twice in one batch: only the first finishes it.
  if entry and not done[entry] then
    done[entry] = true
    release(entry)
    local k = k_delivery(did)
    if attempt ~= '' then
      redis.call('RPUSH', k_attempts(did), attempt)
      redis.call('HINCRBY', k, 'n', 1)
    end
    redis.call('HSET', k, 'st', state)
    finish_known(did, eid, target, okey)
    if has_next == '1' then
      add_job(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5])
    end
    table.insert(out, 'ok')
  else
    table.insert(out, 'lost')
  end
  if has_next == '1' then i = i + 6 end
end
flush()
return out
