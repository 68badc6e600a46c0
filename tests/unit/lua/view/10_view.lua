-- tests/unit/lua/view/10_view.lua
-- The request object of hooks_call_request. The probes get a value `res` and report
-- what they saw with `set`; on_request has no value, so it answers with its results.

local function walk_caller(caller)
    local all = {}
    for k, v in pairs(caller) do
        all[#all + 1] = k .. "=" .. v
    end
    table.sort(all)
    return table.concat(all, ",")
end

function fields(req, res)
    local caller = req.caller
    return {set = {
        method = req.method,
        path = req.path,
        body_size = req.body_size,
        plugin = req.plugin or hooks.null,
        caller_id = caller and caller.id or hooks.null,
        caller_role = caller and caller.role or hooks.null,
        same_caller = req.caller == caller,
        caller_type = caller and type(caller) or hooks.null,
        caller_pairs = caller and walk_caller(caller) or hooks.null,
        unknown = req.nope == nil and req[1] == nil,
        type = type(req),
        headers_type = type(req.headers),
        mt = getmetatable(req),
        headers_mt = getmetatable(req.headers),
    }}
end

function headers(req, res)
    local h = req.headers
    local all = {}
    for name, value in pairs(h) do
        all[#all + 1] = name .. "=" .. value
    end
    table.sort(all)
    return {set = {
        lower = h["content-type"],
        upper = h["CONTENT-TYPE"],
        mixed = h["Content-Type"],
        missing = h["x-missing"] == nil and h[1] == nil and h["content-type\0"] == nil,
        dup = h["x-dup"],
        all = all,
    }}
end

function walk(req, res)
    local seen = {}
    for k, v in pairs(req) do
        seen[#seen + 1] = k .. ":" .. type(v)
    end
    table.sort(seen)
    return {set = {fields = seen}}
end

function on_request(req)
    local path = req.path
    if path == "/deny" then
        return false, 451, "unavailable for legal reasons"
    elseif path == "/deny-table" then
        return {deny = true, message = "no " .. req.method}
    elseif path == "/headers" then
        return {set_headers = {["X-Seen-By"] = "view", ["X-Count"] = 2},
                remove_headers = {"cookie", "not a token"}}
    elseif path == "/bad-header" then
        return {set_headers = {["X-Evil"] = "a\r\nSet-Cookie: x=1"}}
    elseif path == "/set" then
        return {set = {path = "/elsewhere"}}
    elseif path == "/write" then
        req.path = "/elsewhere"
    elseif path == "/write-header" then
        req.headers.host = "evil"
    elseif path == "/mark" then
        req.caller.mark = true
    elseif path == "/keep" then
        kept, kept_headers, kept_caller = req, req.headers, req.caller
    elseif path == "/kept-later" then
        -- the same object, showing this call's request
        return false, 409, tostring(kept == req) .. " " .. kept.path
    elseif path == "/spin" then
        while true do end
    elseif path == "/spin-headers" then
        while true do local _ = req.headers.host end
    elseif path == "/bomb" then
        local t = {}
        for i = 1, 1e9 do t[i] = path .. i end
    end
end

function on_response(req, res)
    return {set = {status = res.status + 1}, set_headers = {["X-Path"] = req.path}}
end

-- Outside any call of the request phases: what was kept must not read.
function read_kept()
    local ok, err = pcall(function() return kept.path end)
    local hok, herr = pcall(function() return kept_headers.host end)
    local pok = pcall(function() for _ in pairs(kept) do end end)
    local hpok = pcall(function() for _ in pairs(kept_headers) do end end)
    local cok, cerr = pcall(function() return kept_caller.role end)
    return {set = {ok = ok, err = tostring(err), headers_ok = hok, headers_err = tostring(herr),
                   pairs_ok = pok, headers_pairs_ok = hpok, caller_ok = cok,
                   caller_err = tostring(cerr)}}
end
