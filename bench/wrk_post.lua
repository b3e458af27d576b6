-- Posts one fixed body (file $WRK_BODY_FILE) on every request; with $WRK_HEADER_LENGTH set,
-- also sends it as Inference-Header-Content-Length (the binary tensor extension).
-- Prints one machine-readable line: RESULT <req/s> <p50 us> <p99 us> <non-2xx> <socket errors>
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local hl = os.getenv("WRK_HEADER_LENGTH")
if hl and hl ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = hl
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
