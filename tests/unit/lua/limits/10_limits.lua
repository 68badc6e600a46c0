function ok()
    return {set = {fine = true}}
end

function spin()
    while true do end
end

-- Catching the budget error must not buy more time.
function spin_pcall()
    while true do
        pcall(function() while true do end end)
    end
end

function spin_close()
    local guard <close> = setmetatable({}, {__close = function() while true do end end})
    while true do end
end

function spin_handler()
    while true do
        xpcall(function() while true do end end, function() while true do end end)
    end
end

-- C loops that run on without VM instructions or allocations.
function move()
    table.move({}, 1, 1e15, 2, {})
end

function shift()
    local t = setmetatable({}, {__len = function() return 1e15 end})
    table.insert(t, 1, "x")
end

function rep_empty()
    return {set = {len = #string.rep("", 1e18)}}
end

function concat_loop()
    local s = ""
    while true do s = s .. "x" end
end

function bomb_rep()
    local s = string.rep("x", 1e9)
    return {set = {len = #s}}
end

function bomb_table()
    local t = {}
    for i = 1, 1e9 do
        t[i] = string.rep("x", 100) .. i
    end
end

-- A script may catch a memory error and go on.
function bomb_caught()
    local ok = pcall(string.rep, "x", 1e9)
    return {set = {caught = not ok}}
end

hoard = {}
function hoard_some()
    hoard[#hoard + 1] = string.rep("y", 1000)
end

function recurse()
    return 1 + recurse()
end
