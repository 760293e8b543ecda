-- Finish a job as succeeded/test and, in the same step, enqueue the next
-- workflow step. ARGV[3] = consumer, ARGV[4] = lease, ARGV[5] = delivery
-- id, ARGV[6] = state, ARGV[7] = attempt JSON ('' = none), ARGV[8] = '1'
-- when a next job follows in ARGV[9..14] (delivery id, event id, target,
-- ordering key, due ms, job). Reply: 'ok' | 'lost'.
local did = ARGV[5]
local entry = held(ARGV[4], ARGV[3], did)
if not entry then return 'lost' end
release(entry)
if ARGV[7] ~= '' then
  redis.call('RPUSH', k_attempts(did), ARGV[7])
  redis.call('HINCRBY', k_delivery(did), 'n', 1)
end
redis.call('HSET', k_delivery(did), 'st', ARGV[6])
finish(did)
if ARGV[8] == '1' then
  create_job(ARGV[9], ARGV[10], ARGV[11], ARGV[12], tonumber(ARGV[13]), ARGV[14])
end
return 'ok'
