-- Each wrk thread is one sequence (run with -t N -c N): its requests carry
-- sequence_start until the first answer arrives (wrk may build a request it never
-- sends), then only the id, so every request goes through the sequence batcher's slot
-- and state. Prints the RESULT line wrk_post.lua prints.
local next_id = 1
function setup(thread)
  thread:set("seq_id", next_id)
  next_id = next_id + 1
end

local started = false
function request()
  local start = started and "" or ',"sequence_start":true'
  local body = string.format(
    '{"parameters":{"sequence_id":%d%s},"inputs":[{"name":"INPUT","datatype":"INT32",' ..
    '"shape":[1,1],"data":[1]}]}', seq_id, start)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 then started = true end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
