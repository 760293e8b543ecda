-- Queue depth counters. Reply: stream length, pending (leased) entries,
-- delayed, delayed that are due (not yet moved to the stream), dead letters, FIFO jobs waiting behind their head, oldest
-- unfinished job's enqueue ms ('' = none), then target/count pairs.
local pending = 0
local summary = redis.pcall('XPENDING', K_READY, K_GROUP)
if type(summary) == 'table' and not summary.err then pending = summary[1] end
local oldest = rcall('ZRANGE', K_UNFINISHED, 0, 0, 'WITHSCORES')[2]
-- Jobs queued at ingestion are in K_UNFINISHED only once they left the
-- stream unfinished; the stream's first entry is the oldest of the rest.
local first = rcall('XRANGE', K_READY, '-', '+', 'COUNT', 1)[1]
local queued = first and field(first[2], 'q')
if queued and (not oldest or tonumber(queued) < tonumber(oldest)) then oldest = queued end
local out = {
  tostring(rcall('XLEN', K_READY)),
  tostring(pending),
  tostring(rcall('ZCARD', K_DELAYED)),
  tostring(rcall('ZCOUNT', K_DELAYED, '-inf', NOW)),
  tostring(rcall('ZCARD', K_DEAD)),
  tostring(rcall('HGET', K_COUNTS, 'fifo_waiting') or '0'),
  oldest or '',
}
for _, v in ipairs(rcall('HGETALL', K_PENDING)) do tinsert(out, v) end
return out
