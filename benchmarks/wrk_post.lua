-- wrk script for benchmarks/serving.py: POST a JSON body, one of several, per request.
-- Usage: wrk -s benchmarks/wrk_post.lua URL -- BODY...   (each BODY a JSON document)
-- Prints one line "RESULT {json}" with the run's counts and latency percentiles (ms).
local bodies = {}

function init(args)
  for _, body in ipairs(args) do
    bodies[#bodies + 1] = body
  end
  if #bodies == 0 then
    bodies[1] = "{}"
  end
end

local n = 0
function request()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(n % #bodies) + 1])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "non_2xx": %d, "socket_errors": %d, "seconds": %.3f, ' ..
    '"rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
