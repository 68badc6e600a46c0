function version()
    return {set = {version = 2}}
end
