-- Dead letters back to ready with attempts reset; a FIFO job joins the
-- back of its line. ARGV[3] = target label ('' = all), ARGV[4..] =
-- delivery ids (a chunk of the dead letter set, oldest first). Reply: count.
local n = 0
for i = 4, #ARGV do
  local did = ARGV[i]
  if rcall('ZSCORE', K_DEAD, did) then
    local d = rcall('HMGET', k_delivery(did), 'ev', 'tg', 'ok', 'job')
    if d[1] and (ARGV[3] == '' or d[2] == ARGV[3]) then
      rcall('ZREM', K_DEAD, did)
      count_dead(d[2], -1)
      rcall('HSET', k_delivery(did), 'st', 'pending', 'rs', '', 'n', '0', 'orph', '')
      activate(did, d[2], d[3] or '', 0, d[4], '0', '', d[1])
      n = n + 1
    elseif not d[1] then
      rcall('ZREM', K_DEAD, did)
    end
  end
end
flush()
return n
