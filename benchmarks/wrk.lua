-- The one wrk script every run uses, so all rows are measured the same way.
--
-- Arguments (after `--` on wrk's command line): a path, optionally containing "{id}",
-- and the first and last id to substitute; optionally then a method (default GET), a
-- body ("" for none) and headers, one argument each ("Authorization: Bearer ..."). Requests
-- are formatted once in init(); each request picks one at random. done() prints a
-- machine-readable summary line, because wrk's own --latency block has no 95th percentile.

local prepared = {}

function init(args)
  local template = args[1] or "/"
  local first = tonumber(args[2]) or 1
  local last = tonumber(args[3]) or first
  local method = args[4] or "GET"
  local body = args[5]
  if body == "" then
    body = nil
  end
  local headers = nil -- wrk's own (Host) unless headers are given
  for i = 6, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    headers = headers or {}
    headers[name] = value
  end
  if string.find(template, "{id}", 1, true) then
    for id = first, last do
      local path = string.gsub(template, "{id}", tostring(id))
      prepared[#prepared + 1] = wrk.format(method, path, headers, body)
    end
  else
    prepared[1] = wrk.format(method, template, headers, body)
  end
end

function request()
  return prepared[math.random(#prepared)]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_SUMMARY requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d "
      .. "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end
