-- Jobs of entries a blocking XREADGROUP handed out that the worker cannot
-- take as they are: entries whose delivery record is written at first
-- lease (they carry 't', see create_job) and entries of an older hookyard
-- that carry only their delivery id. ARGV[3..] = entry ids. Reply: emitted
-- jobs (see emit).
local out = {}
for i = 3, #ARGV do
  local e = rcall('XRANGE', K_READY, ARGV[i], ARGV[i])[1]
  if e then emit(out, e[1], 1, e[2]) end
end
flush()
return out
