-- GET a random user's notes with the ETag they already hold; each line of the file in
-- args[1] is a path (with a valid hash), a space, and the ETag of its answer.
local requests = {}

function init(args)
  for line in io.lines(args[1]) do
    local path, etag = line:match("^(%S+) (%S+)$")
    requests[#requests + 1] = {path, etag}
  end
  math.randomseed(os.time() * 1000 + #requests)
end

function request()
  local chosen = requests[math.random(#requests)]
  return wrk.format("GET", chosen[1], {["If-None-Match"] = chosen[2]})
end
