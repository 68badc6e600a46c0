-- Only admins may call paths under these prefixes; everyone else gets 403. The caller is
-- known when the route asks for authentication (required or optional) and a valid token
-- was sent.
BLOCKED_PREFIXES = {"/v1/admin/"}

-- The host calls on_request below only for paths under these prefixes (REQUEST_PATHS is
-- read once per load), so every other request costs no Lua at all.
REQUEST_PATHS = BLOCKED_PREFIXES

function on_request(req)
    local role = req.caller and req.caller.role
    if role == "admin" then
        return
    end
    for _, prefix in ipairs(BLOCKED_PREFIXES) do
        if req.path:sub(1, #prefix) == prefix then
            return false, 403, "only admins may use " .. prefix
        end
    end
end
