-- wrk script: POST the 1-row V2 request body.
-- Body file: env var BODY (default request.json next to the cwd).
-- Counts non-2xx responses so a run that "works" only on paper is visible.
local path = os.getenv("BODY") or "request.json"
local f = assert(io.open(path, "r"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, b)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do
    total_bad = total_bad + t:get("bad")
  end
  io.write(string.format("non-200 responses: %d\n", total_bad))
  io.write(string.format("latency p50=%.2fms p90=%.2fms p99=%.2fms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000))
end
