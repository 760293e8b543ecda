-- Delay the job without using an attempt. ARGV[3] = consumer, ARGV[4] =
-- lease, ARGV[5] = delivery id, ARGV[6] = due ms, ARGV[7] =
-- orphaned_since ('' = none). Reply: 'ok' | 'lost'.
local did = ARGV[5]
local entry = held(ARGV[4], ARGV[3])
if not entry then return 'lost' end
keep_unfinished(entry, did)
release(entry)
rcall('HSET', k_delivery(did), 'orph', ARGV[7])
rcall('ZADD', K_DELAYED, ARGV[6], did)
flush()
return 'ok'
