-- The conventions of hooks.h, one hook each.

function on_request(req)
    if req.path == "/admin" then
        return {deny = true, status = 403, message = "admins only"}
    end
    if req.path == "/teapot" then
        return false, 418, "short and stout"
    end
    if req.path == "/bare" then
        return false
    end
    if req.path == "/tag" then
        return {set_headers = {["X-Seen-By"] = "basic", ["X-Count"] = 2},
                remove_headers = {"cookie"}}
    end
end

function on_response(req, res)
    return {set = {status = res.status + 1, from = req.path}}
end

function before_user_register(user)
    if not user.email:find("@", 1, true) then
        return {deny = true, status = 422, message = "email needs an @"}
    end
    return {set = {email = user.email:lower(), verified = false, tags = hooks.array{}}}
end

function echo(v)
    return {set = {copy = v}}
end

function shapes(v)
    if v.kind == "number" then return 42 end
    if v.kind == "typo" then return {sett = {a = 1}} end
    if v.kind == "status" then return {status = 404} end
    if v.kind == "badstatus" then return false, 42 end
    if v.kind == "function" then return {set = {f = print}} end
    if v.kind == "mixed" then return {set = {m = {1, 2, x = 3}}} end
    if v.kind == "header" then return {set_headers = {["X-Evil"] = "a\r\nSet-Cookie: x=1"}} end
    if v.kind == "true" then return true end
    print("shapes: nothing to do for", v.kind)
end

-- Nested objects are converted when read; pairs sees every field.
function nested(req)
    local unread = rawget(req, "meta") == nil
    local names = {}
    for name in pairs(req.headers) do
        names[#names + 1] = name
    end
    table.sort(names)
    req.caller.seen = true
    kept = req
    return {set = {names = names, caller = req.caller, unread = unread, whole = req}}
end

-- `kept` outlived its call: what was read then is still there, the rest is gone.
function stale()
    return {set = {headers = kept.headers ~= nil, role = kept.caller.role, meta = kept.meta == nil}}
end
