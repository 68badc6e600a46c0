-- Runs a snippet as this script's own code would run and says whether it worked.
function escape(v)
    local f, err = load(v.code)
    if not f then
        return {set = {ok = false, err = err}}
    end
    local ok, res = pcall(f)
    return {set = {ok = ok, err = tostring(res)}}
end

-- Everything a script may do to its own copies: none of it reaches 20_victim.lua.
function tamper()
    string.upper = function() return "pwned" end
    rawset(string, "lower", function() return "pwned" end)
    table.concat = nil
    leaked_global = "escape"
    _G.leaked_too = "escape"
    pcall(function() getmetatable("").__index.upper = function() return "pwned" end end)
    pcall(function() getmetatable(_ENV).__index.print = nil end)
    pcall(function() setmetatable(_ENV, nil) end)
    hooks.null = "not null"
end

function collectgarbage_count_is_fine()
    assert(type(collectgarbage("count")) == "number")
end
