-- wrk script for bench/serve.sh: every request a random path from the file
-- given after `--` (one path per line).
local paths = {}

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  -- a different sequence per thread
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + #tostring({}))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
