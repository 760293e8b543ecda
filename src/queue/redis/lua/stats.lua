-- Queue depth counters. Reply: stream length, pending (leased) entries,
-- delayed, delayed that are due (not yet moved to the stream), dead letters, FIFO jobs waiting behind their head, oldest
-- unfinished job's enqueue ms ('' = none), then three sections, each its
-- number of target/count pairs and the pairs: unfinished jobs, leased jobs
-- and dead letters per target.
-- ARGV[3] = most leased entries to look at for the per-target count.
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
local function section(flat)
  tinsert(out, tostring(#flat / 2))
  for _, v in ipairs(flat) do tinsert(out, v) end
end
section(rcall('HGETALL', K_PENDING))
-- Leased jobs per target: the group's pending list holds exactly the
-- leased entries (as many as the workers of every replica hold). An entry
-- queued at ingestion names its target ('t'); others are read from the
-- delivery record, which exists from the first lease on.
local leased, by_target = {}, {}
if pending > 0 then
  local pel = redis.pcall('XPENDING', K_READY, K_GROUP, '-', '+', tonumber(ARGV[3]))
  if type(pel) == 'table' and not pel.err then
    for _, p in ipairs(pel) do
      local e = rcall('XRANGE', K_READY, p[1], p[1])[1]
      if e then
        local target = field(e[2], 't')
        if not target then
          local did = field(e[2], 'd')
          target = did and rcall('HGET', k_delivery(did), 'tg')
        end
        if target then by_target[target] = (by_target[target] or 0) + 1 end
      end
    end
  end
end
for target, n in pairs(by_target) do
  tinsert(leased, target)
  tinsert(leased, tostring(n))
end
section(leased)
section(rcall('HGETALL', K_DEAD_BY))
return out
