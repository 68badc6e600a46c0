function before_task_create(task)
    return {set = {trail = task.trail .. "first;", owner = "first"}}
end

function gate(v)
    if v.deny_in_first then
        return false, 401, "first says no"
    end
end
