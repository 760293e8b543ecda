-- Record a failed attempt and delay the job (it keeps its FIFO place).
-- ARGV[3] = consumer, ARGV[4] = lease, ARGV[5] = delivery id, ARGV[6] =
-- attempt JSON, ARGV[7] = due ms. Reply: 'ok' | 'lost'.
local did = ARGV[5]
local entry = held(ARGV[4], ARGV[3])
if not entry then return 'lost' end
keep_unfinished(entry, did)
release(entry)
rcall('RPUSH', k_attempts(did), ARGV[6])
rcall('HINCRBY', k_delivery(did), 'n', 1)
rcall('ZADD', K_DELAYED, ARGV[7], did)
flush()
return 'ok'
