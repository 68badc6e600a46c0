local config = nil
local limit = config.limit
