-- An experiment, not hookyard: the least an ingest script can write, for
-- measuring how much of the ingest ceiling is left once the HTTP side
-- (auth, JSON, routing, batching) is paid. It writes the idempotency key
-- and one stream entry carrying the event, and nothing else: no event
-- record, no delivery record, no history indexes, no counters, so the
-- event cannot be looked up, listed or retried (what SPEC §6 asks for).
-- Same arguments and reply as lua/ingest.lua. To measure it, put it in
-- place of src/queue/redis/lua/ingest.lua, build release, and run
-- `bash bench/cpu 6 redis ingest` beside the ceiling (BENCHMARKS.md).
local out = {'0'}
local window = ARGV[3]
local items = tonumber(ARGV[4])
local i = 5
for _ = 1, items do
  local idem, eid, ejson, njobs = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 4])
  i = i + 5
  local old = nil
  if idem ~= '' then
    old = redis.call('SET', P .. ':idem:' .. idem, eid, 'NX', 'PX', window, 'GET')
  end
  if old then
    table.insert(out, 'dup')
    table.insert(out, old)
    i = i + 5 * njobs
  else
    for _ = 1, njobs do
      redis.call('XADD', K_READY, '*', 'd', ARGV[i], 'j', ARGV[i + 4], 'e', eid, 'v', ejson)
      i = i + 5
    end
    table.insert(out, 'ok')
    table.insert(out, eid)
  end
end
return out
