-- wrk script: send N requests per write (HTTP/1.1 pipelining), as in the
-- TechEmpower plaintext benchmark and the Kourier post.
--   wrk ... -s pipeline.lua -- N            N plain GETs per write (default 1)
--   wrk ... -s pipeline.lua -- N browser    N browser-like GETs (~10 headers)
--   wrk ... -s pipeline.lua -- N corpus F   N different requests per write from the
--                                           corpus file F (bench/experiment/corpora.py's format)
-- The path is the one in wrk's URL (a corpus brings its own request lines).
--
-- Corpus mode: the requests are joined into batches of N consecutive ones
-- (batch b holds requests b*N+1 .. b*N+N, wrapping round the file), at least
-- 16 batches, enough to go through the whole file once; every write (wrk
-- calls request() once per write) takes the thread's next batch.  So no two
-- requests of a write are equal (N <= the file's count), and successive
-- writes differ too.  wrk counts the requests of the first batch (all hold N)
-- and then one response per request.
local thread_count = 0

setup = function(thread)
  -- each wrk thread starts at its own batch
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local function read_corpus(path)
  local f = io.open(path, "rb")
  if f == nil then
    error("pipeline.lua: cannot open the corpus " .. tostring(path))
  end
  local data = f:read("*a")
  f:close()
  local nl = data:find("\n", 1, true)
  if nl == nil or data:sub(1, 15) ~= "kourier-corpus " then
    error("pipeline.lua: " .. path .. " is not a kourier corpus file")
  end
  local out, pos = {}, nl + 1
  while pos <= #data do
    local e = data:find("\n", pos, true)
    local n = e and tonumber(data:sub(pos, e - 1))
    if n == nil or e + n > #data then
      error("pipeline.lua: " .. path .. ": bad record at byte " .. pos)
    end
    out[#out + 1] = data:sub(e + 1, e + n)
    pos = e + n + 1
  end
  return out
end

init = function(args)
  local depth = tonumber(args[1]) or 1
  local headers = nil
  if args[2] == "browser" then
    headers = {
      ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
      ["Accept-Encoding"] = "gzip, deflate, br",
      ["Accept-Language"] = "en-US,en;q=0.5",
      ["Cache-Control"] = "max-age=0",
      ["Connection"] = "keep-alive",
      ["Cookie"] = "session=8f2b6c1e9d0a4f7b; theme=dark; consent=1",
      ["Referer"] = "http://localhost/index.html",
      ["Sec-Fetch-Dest"] = "document",
      ["Sec-Fetch-Mode"] = "navigate",
      ["Upgrade-Insecure-Requests"] = "1",
      ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    }
  elseif args[2] == "corpus" then
    local reqs = read_corpus(args[3])
    local count = #reqs
    if depth > count then
      error("pipeline.lua: the corpus has " .. count .. " requests, fewer than the pipeline depth "
            .. depth .. " (a write would repeat requests)")
    end
    local nbatches = math.max(16, math.ceil(count / depth))
    batches = {}
    for b = 0, nbatches - 1 do
      local r = {}
      for i = 0, depth - 1 do
        r[i + 1] = reqs[(b * depth + i) % count + 1]
      end
      batches[b + 1] = table.concat(r)
    end
    next_batch = (thread_index or 0) % nbatches
    return
  elseif args[2] ~= nil then
    error("pipeline.lua: unknown mode " .. args[2] .. " (expected: browser, corpus FILE)")
  end
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, nil, headers)
  end
  req = table.concat(r)
end

request = function()
  if batches ~= nil then
    next_batch = next_batch % #batches + 1
    return batches[next_batch]
  end
  return req
end
