-- The non-blocking half of lease(). ARGV[3] = consumer, ARGV[4] = max jobs,
-- ARGV[5] = lease ms (min idle of a reclaim), ARGV[6] = reclaim cursor,
-- ARGV[7] = '1' to look for lapsed leases this time (XAUTOCLAIM is the
-- costly part, so callers throttle it).
-- Moves due delayed jobs into the stream, reclaims entries whose lease
-- lapsed, reads new entries. Reply: next reclaim cursor, earliest delayed
-- due ms ('' = none), then the emitted jobs (see emit).
local consumer, max = ARGV[3], tonumber(ARGV[4])
local due = rcall('ZRANGEBYSCORE', K_DELAYED, '-inf', NOW, 'LIMIT', 0, 1000)
if #due > 0 then
  vcall('ZREM', K_DELAYED, due, 1)
  for _, did in ipairs(due) do push_from_record(did) end
end
local nd = rcall('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
local claimed = {ARGV[6], {}}
if ARGV[7] == '1' then
  claimed = rcall('XAUTOCLAIM', K_READY, K_GROUP, consumer, ARGV[5], ARGV[6], 'COUNT', max)
end
local out = {claimed[1], nd[2] or ''}
local got = 0
for _, e in ipairs(claimed[2]) do
  if e[2] then
    local pe = rcall('XPENDING', K_READY, K_GROUP, e[1], e[1], 1)
    got = got + emit(out, e[1], pe[1][4], e[2])
  end
end
if got < max then
  local r = rcall('XREADGROUP', 'GROUP', K_GROUP, consumer, 'COUNT', max - got, 'STREAMS', K_READY, '>')
  if r then
    for _, e in ipairs(r[1][2]) do emit(out, e[1], 1, e[2]) end
  end
end
flush()
return out
