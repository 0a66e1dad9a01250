-- wrk script for bench/bench_api_load.py: the token header, and one line of figures at the end
-- (p50, p95 and max in ms, requests, non-2xx/3xx responses, socket errors).
wrk.headers["Authorization"] = os.getenv("WRK_AUTHORIZATION")
wrk.headers["Accept"] = "application/json"

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT p50_ms=%.2f p95_ms=%.2f max_ms=%.2f requests=%d non_2xx_3xx=%d socket_errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency.max / 1000,
    summary.requests, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
