-- tests/unit/lua/view/20_second.lua
-- Runs after 10_view.lua and sees its header changes.
function on_request(req)
    if req.path == "/headers" then
        local names = {}
        for name in pairs(req.headers) do
            names[#names + 1] = name
        end
        table.sort(names)
        local cookie = req.headers.cookie == nil and "no-cookie" or "cookie"
        return {set_headers = {["X-Second"] = req.headers["X-SEEN-BY"] .. ";" .. cookie .. ";" ..
                                              table.concat(names, ",")},
                remove_headers = {"X-COUNT"}}
    end
end
