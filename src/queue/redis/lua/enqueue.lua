-- New jobs for existing events (replay, manual retry). ARGV[3] = job count,
-- then per job: delivery id, event id, target label, ordering key, due ms,
-- job. Reply: 'ok', or 'missing' and the first unknown event id (nothing
-- written then).
local n = tonumber(ARGV[3])
for j = 0, n - 1 do
  local eid = ARGV[4 + j * 6 + 1]
  if rcall('EXISTS', k_event(eid)) == 0 then return {'missing', eid} end
end
for j = 0, n - 1 do
  local b = 4 + j * 6
  add_job(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], tonumber(ARGV[b + 4]), ARGV[b + 5])
end
flush()
return {'ok'}
