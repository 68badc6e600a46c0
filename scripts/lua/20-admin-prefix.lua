-- Only admins may call paths under these prefixes; everyone else gets 403. The caller is
-- known when the route asks for authentication (required or optional) and a valid token
-- was sent.
BLOCKED_PREFIXES = {"/v1/admin/"}

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
