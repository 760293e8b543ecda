-- Count the dead letters per target (K_DEAD_BY) once, for a store written
-- before the count was kept; the marker key says it is done (a Redis that
-- restarted empty has neither, and nothing to count). Reply: 1 when
-- counted now, 0 when already done.
local marker = P .. ':deadby:counted'
if rcall('EXISTS', marker) == 1 then return 0 end
rcall('DEL', K_DEAD_BY)
for _, did in ipairs(rcall('ZRANGE', K_DEAD, 0, -1)) do
  count_dead(rcall('HGET', k_delivery(did), 'tg'), 1)
end
rcall('SET', marker, '1')
return 1
