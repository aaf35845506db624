-- POST reads for a random user; args[1] is a file of JSON bodies, args[2] the path.
local bodies = {}
local path

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  path = args[2]
  math.randomseed(os.time() * 1000 + #bodies)
end

function request()
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, bodies[math.random(#bodies)])
end
