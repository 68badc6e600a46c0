function index_nil()
    local t = nil
    return t.field
end

function bad_argument()
    return string.rep()
end

function error_table()
    error({code = 1})
end

function error_string()
    error("plain")
end

function bad_pattern()
    return ("abc"):find(nil)
end

function bad_setmetatable()
    return setmetatable(1, {})
end
