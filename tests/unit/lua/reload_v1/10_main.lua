function version()
    return {set = {version = 1}}
end

function only_in_v1()
end
