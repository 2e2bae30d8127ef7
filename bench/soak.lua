-- wrk script for bench/soak.py: 1-row predictions at a paced rate, each with its own id.
-- ROWS: a file of one JSON instance per line; PREFIX: the id prefix of this phase;
-- DELAY_MS: pause before each request on a connection (paces the rate).
-- The id is PREFIX-<thread>-<counter> and the row is line (counter % lines), so the
-- feedback poster can tell each logged prediction's true label from its id.
local path = assert(os.getenv("ROWS"), "set ROWS")
local prefix = assert(os.getenv("PREFIX"), "set PREFIX")
local pause = tonumber(os.getenv("DELAY_MS") or "0")
local rows = {}
for line in io.lines(path) do
  if #line > 0 then table.insert(rows, line) end
end
assert(#rows > 0, "no rows in " .. path)

local threads = {}
counter = 0
bad = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  bad = 0
end

function delay()
  return pause
end

function request()
  counter = counter + 1
  local body = '{"ids":["' .. prefix .. '-' .. tid .. '-' .. counter .. '"],"instances":[' ..
    rows[(counter % #rows) + 1] .. ']}'
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
  local e = summary.errors
  io.write(string.format("RESULT non200=%d requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "connect=%d read=%d write=%d timeout=%d\n", total_bad, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.timeout))
end
