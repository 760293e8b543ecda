-- GCRA rate limiter (same arithmetic as src/queue/gcra.rs), one key per
-- target: KEYS[1] = <p>:rl:<target label>, holding the theoretical arrival
-- time (TAT) in unix ms. ARGV[1] = interval between requests in ms (1000 /
-- per second), ARGV[2] = burst. Returns 0 when the request may go (and moves
-- the TAT on), else the wait in ms (at least 1).
--
-- "Now" is the Redis server's clock (TIME), not the caller's, so replicas
-- with skewed clocks share one time line. The key expires once the TAT is
-- past, so idle targets leave nothing behind.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = math.max(tonumber(ARGV[2]), 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return math.max(math.ceil(allow_at - now), 1)
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(new_tat - now), 1))
return 0
