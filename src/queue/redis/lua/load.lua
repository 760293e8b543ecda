-- Jobs of entries a blocking XREADGROUP handed out. ARGV[3..] = pairs of
-- entry id and delivery id. Reply: emitted jobs (see emit).
local out = {}
for i = 3, #ARGV, 2 do
  emit(out, ARGV[i], 1, ARGV[i + 1])
end
return out
