-- Jobs of entries a blocking XREADGROUP handed out that carry only their
-- delivery id (written by an older hookyard). ARGV[3..] = pairs of entry
-- id and delivery id. Reply: emitted jobs (see emit).
local out = {}
for i = 3, #ARGV, 2 do
  emit(out, ARGV[i], 1, {'d', ARGV[i + 1]})
end
flush()
return out
