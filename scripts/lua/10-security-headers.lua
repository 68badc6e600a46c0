-- Adds the usual security headers to every response, errors included. Change or drop a
-- header here; nothing else needs restarting: SIGHUP reloads the scripts.
--
-- RESPONSE_HEADERS is a declaration, not a hook: the host reads it once per (re)load and
-- adds the headers itself, without running Lua for each response. A header that depends
-- on the request still belongs in an on_response(req, res) hook.
RESPONSE_HEADERS = {
    ["X-Content-Type-Options"] = "nosniff",
    ["X-Frame-Options"] = "DENY",
    ["Referrer-Policy"] = "no-referrer",
    ["Cache-Control"] = "no-store",
}
