-- wrk script: pipeline.lua's requests, and at the end wrk's whole latency
-- distribution written as "microseconds count" lines, so the runs of several
-- client hosts merge exactly (bench/hosts/remote.py) instead of averaging percentiles.
--   KOURIER_PIPELINE_LUA  path of pipeline.lua (the requests)
--   KOURIER_LATENCY_OUT   where the distribution goes
-- The distribution is the one wrk prints its --latency percentiles from.
dofile(os.getenv("KOURIER_PIPELINE_LUA"))

done = function(summary, latency, requests)
  local f = assert(io.open(os.getenv("KOURIER_LATENCY_OUT"), "w"))
  for i = 1, #latency do
    local value, count = latency(i)
    f:write(string.format("%d %d\n", value, count))
  end
  f:close()
end
