-- Extend a lease: XCLAIM by the same consumer resets the entry's idle time
-- (JUSTID keeps the delivery count). ARGV[3] = consumer, ARGV[4] = lease,
-- ARGV[5] = delivery id. Reply: 'ok' | 'lost'.
local entry = held(ARGV[4], ARGV[3])
if not entry then return 'lost' end
rcall('XCLAIM', K_READY, K_GROUP, ARGV[3], 0, entry, 'JUSTID')
return 'ok'
