-- wrk script: POST a different body each request, cycling through the lines of $BODIES
-- (one JSON body per line), so the server never sees the same row twice in a row.
-- Prints the non-200 count and latency percentiles in a form serve_bench.py parses.
local path = assert(os.getenv("BODIES"), "set BODIES to a file of one JSON body per line")
local bodies = {}
for line in io.lines(path) do
  if #line > 0 then table.insert(bodies, line) end
end
assert(#bodies > 0, "no bodies in " .. path)

local threads = {}
counter = 0
bad = 0

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  counter = offset or 0
  bad = 0
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do
    total_bad = total_bad + t:get("bad")
  end
  io.write(string.format("RESULT non200=%d requests=%d duration_us=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d p999_us=%d\n", total_bad, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
