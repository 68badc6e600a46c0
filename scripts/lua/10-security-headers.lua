-- Adds the usual security headers to every response (on_response runs for every route,
-- errors included). Change or drop a header here; nothing else needs restarting:
-- SIGHUP reloads the scripts.
local HEADERS = {
    ["X-Content-Type-Options"] = "nosniff",
    ["X-Frame-Options"] = "DENY",
    ["Referrer-Policy"] = "no-referrer",
    ["Cache-Control"] = "no-store",
}

function on_response(req, res)
    return {set_headers = HEADERS}
end
