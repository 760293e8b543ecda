-- Finish jobs as succeeded/test and, in the same step, enqueue each one's
-- next workflow step. Concurrent completions of one process are coalesced
-- into one call (see redis/batch.rs). ARGV[3] = consumer, ARGV[4] = item
-- count, then per item: lease, delivery id, target label, ordering key,
-- state, attempt JSON ('' = none), attempts made counting this one, '1'
-- when a next job follows in the 6 next arguments (delivery id, event id,
-- target, ordering key, due ms, job) else '0'. Reply: per item 'ok' |
-- 'lost' (on a cluster, after the items the next partition's prefix,
-- item count and items follow; see each_partition). Per job this writes
-- the attempt and one HSET of the record; the leases of a partition's
-- share of the batch are checked with one XPENDING.
local consumer = ARGV[3]
local function complete_partition(at, out)
  local items = tonumber(ARGV[at])
  local leases = {}
  local i = at + 1
  for _ = 1, items do
    tinsert(leases, ARGV[i])
    i = i + (ARGV[i + 7] == '1' and 14 or 8)
  end
  local held = held_many(leases, consumer)
  local done = {}
  i = at + 1
  for _ = 1, items do
    local lease, did, target, okey, state, attempt, n, has_next =
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
    i = i + 8
    local entry = held[lease]
    -- The same lease twice in one batch: only the first finishes it.
    if entry and not done[entry] then
      done[entry] = true
      release(entry)
      local k = k_delivery(did)
      if attempt ~= '' then
        rcall('RPUSH', k_attempts(did), attempt)
        rcall('HSET', k, 'st', state, 'n', n)
      else
        rcall('HSET', k, 'st', state)
      end
      finish_known(did, target, okey)
      if has_next == '1' then
        add_job(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5])
      end
      tinsert(out, 'ok')
    else
      tinsert(out, 'lost')
    end
    if has_next == '1' then i = i + 6 end
  end
  return i
end
-- The ARGV index after the share starting at `at` (its item count).
local function skip_items(at)
  local j = at + 1
  for _ = 1, tonumber(ARGV[at]) do j = j + (ARGV[j + 7] == '1' and 14 or 8) end
  return j
end
return each_partition(4, complete_partition, skip_items)
