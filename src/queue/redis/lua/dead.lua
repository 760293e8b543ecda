-- Give up on a job: record the attempt and the reason, park it in the dead
-- letter set, release its FIFO line. ARGV[3] = consumer, ARGV[4] = lease,
-- ARGV[5] = delivery id, ARGV[6] = attempt JSON ('' = none), ARGV[7] =
-- reason. Reply: 'ok' | 'lost'.
local did = ARGV[5]
local entry = held(ARGV[4], ARGV[3])
if not entry then return 'lost' end
release(entry)
if ARGV[6] ~= '' then
  rcall('RPUSH', k_attempts(did), ARGV[6])
  rcall('HINCRBY', k_delivery(did), 'n', 1)
end
rcall('HSET', k_delivery(did), 'st', 'dead_letter', 'rs', ARGV[7])
local d = rcall('HMGET', k_delivery(did), 'tg', 'ok')
if rcall('ZADD', K_DEAD, NOW_S, did) == 1 then count_dead(d[1], 1) end
finish_known(did, d[1], d[2])
flush()
return 'ok'
