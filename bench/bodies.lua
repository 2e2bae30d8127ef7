-- wrk script for bench/serve_bench.py and bench/soak.py. Two ways to make bodies:
--   BODIES: a file of one JSON body per line, cycled, so the server never sees the same row
--           twice in a row (serve_bench.py);
--   ROWS + PREFIX: a file of one JSON instance per line; each request is a 1-row predict
--           body with its own id PREFIX-<thread>-<counter>, its row being line
--           (counter % lines), so a feedback poster can tell each id's row (soak.py).
-- DELAY_MS (optional) pauses before each request on a connection, to pace the rate.
-- Prints the non-200 count, socket errors and latency percentiles on one RESULT line.
local rows_path = os.getenv("ROWS")
local path = rows_path or assert(os.getenv("BODIES"), "set BODIES (or ROWS and PREFIX)")
local prefix = rows_path and assert(os.getenv("PREFIX"), "set PREFIX with ROWS")
local pause = tonumber(os.getenv("DELAY_MS") or "0")
local lines = {}
for line in io.lines(path) do
  if #line > 0 then table.insert(lines, line) end
end
assert(#lines > 0, "no lines in " .. path)

local threads = {}
counter = 0
bad = 0

function setup(thread)
  thread:set("tid", #threads)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  counter = prefix and 0 or (offset or 0)
  bad = 0
end

if pause > 0 then
  function delay()
    return pause
  end
end

function request()
  counter = counter + 1
  local line = lines[(counter % #lines) + 1]
  local body = line
  if prefix then
    body = '{"ids":["' .. prefix .. '-' .. tid .. '-' .. counter .. '"],"instances":[' ..
      line .. ']}'
  end
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
  io.write(string.format("RESULT non200=%d requests=%d duration_us=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d p999_us=%d connect=%d read=%d write=%d timeout=%d\n", total_bad,
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), e.connect, e.read, e.write, e.timeout))
end
