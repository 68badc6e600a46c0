-- Tighter body limits than [http] max_body_size for chosen routes ("METHOD /path" =
-- bytes). Answers 413 before the plugin sees the request.
LIMITS = {
    ["POST /v1/auth/register"] = 4096,
    ["POST /v1/auth/login"] = 4096,
}

-- Only the paths named above need the hook: the host skips it for every other request.
REQUEST_PATHS = {}
for route in pairs(LIMITS) do
    REQUEST_PATHS[#REQUEST_PATHS + 1] = route:match("^%S+ (.+)$")
end

function on_request(req)
    local limit = LIMITS[req.method .. " " .. req.path]
    if limit and req.body_size > limit then
        return {deny = true, status = 413,
                message = "the body of " .. req.method .. " " .. req.path ..
                          " may be at most " .. limit .. " bytes"}
    end
end
