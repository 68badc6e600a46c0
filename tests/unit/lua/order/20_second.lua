second_calls = 0

function before_task_create(task)
    -- sees what 10_first.lua set
    return {set = {trail = task.trail .. "second(owner=" .. task.owner .. ");"}}
end

function gate(v)
    second_calls = second_calls + 1
    return false, 402, "second says no"
end

function calls()
    return {set = {second_calls = second_calls}}
end
