function on_request(req)
end

-- Reads a nested object, so req.caller is converted on every call.
function on_request_check(req)
    if req.caller.role ~= "admin" and req.path:sub(1, 7) == "/admin/" then
        return false, 403, "admins only"
    end
end

-- Walks every header.
function on_request_headers(req)
    local n = 0
    for name, value in pairs(req.headers) do
        n = n + #name + #value
    end
    if n > 8192 then
        return false, 431, "headers too large"
    end
end
