-- The non-blocking half of lease(). ARGV[3] = consumer, ARGV[4] = max jobs
-- (over all partitions of the call), ARGV[5] = lease ms (min idle of a
-- reclaim), then per partition: reclaim cursor and '1' to look for lapsed
-- leases this time (XAUTOCLAIM is the costly part, so callers throttle
-- it); on a cluster the partitions of one master follow, each as prefix,
-- cursor, flag (see each_partition; ARGV[1] is the first one's prefix).
-- Per partition: moves due delayed jobs into the stream, reclaims entries
-- whose lease lapsed, reads new entries, as long as jobs are wanted. Reply
-- per partition: next reclaim cursor, earliest delayed due ms ('' =
-- none), the number of jobs, then the emitted jobs (see emit).
local consumer, max, lease_ms = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local total = 0
local function lease_partition(at, out)
  local cursor, reclaim = ARGV[at], ARGV[at + 1]
  -- The earliest delayed job first: only when it is due are the due ones
  -- read and moved (one command per call when nothing is due).
  local nd = rcall('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if nd[2] and tonumber(nd[2]) <= NOW then
    local due = rcall('ZRANGEBYSCORE', K_DELAYED, '-inf', NOW, 'LIMIT', 0, 1000)
    vcall('ZREM', K_DELAYED, due, 1)
    for _, did in ipairs(due) do push_from_record(did) end
    nd = rcall('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  end
  local want = max - total
  local claimed = {cursor, {}}
  if reclaim == '1' and want > 0 then
    claimed = rcall('XAUTOCLAIM', K_READY, K_GROUP, consumer, lease_ms, cursor, 'COUNT', want)
  end
  local jobs = {}
  local got = 0
  for _, e in ipairs(claimed[2]) do
    if e[2] then
      local pe = rcall('XPENDING', K_READY, K_GROUP, e[1], e[1], 1)
      got = got + emit(jobs, e[1], pe[1][4], e[2])
    end
  end
  if got < want then
    local r = rcall('XREADGROUP', 'GROUP', K_GROUP, consumer, 'COUNT', want - got, 'STREAMS', K_READY, '>')
    if r then
      for _, e in ipairs(r[1][2]) do got = got + emit(jobs, e[1], 1, e[2]) end
    end
  end
  total = total + got
  tinsert(out, claimed[1])
  tinsert(out, nd[2] or '')
  tinsert(out, tostring(got))
  for _, v in ipairs(jobs) do tinsert(out, v) end
  return at + 2
end
return each_partition(6, lease_partition, function(at) return at + 2 end)
