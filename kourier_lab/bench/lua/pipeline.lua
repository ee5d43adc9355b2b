-- wrk script: send N requests per write (HTTP/1.1 pipelining), as in the
-- TechEmpower plaintext benchmark and the Kourier post.
--   wrk ... -s pipeline.lua -- N            N plain GETs per write (default 1)
--   wrk ... -s pipeline.lua -- N browser    N browser-like GETs (~10 headers)
-- The path is the one in wrk's URL.
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
  elseif args[2] ~= nil then
    error("pipeline.lua: unknown mode " .. args[2] .. " (expected: browser)")
  end
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, nil, headers)
  end
  req = table.concat(r)
end

request = function()
  return req
end
