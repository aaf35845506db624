-- GET a random user's notes; the paths (with valid hashes) come from the file in args[1].
local paths = {}

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() * 1000 + #paths + (tonumber(args[2]) or 0))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
