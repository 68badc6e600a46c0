function check()
    return {set = {
        upper_method = ("abc"):upper(),
        upper = string.upper("abc"),
        lower = string.lower("ABC"),
        concat = table.concat({"a", "b"}),
        leaked = leaked_global ~= nil or leaked_too ~= nil,
        print = type(print),
        null_ok = type(hooks.null) == "userdata",
    }}
end
