-- Task policy for the task plugin: only an owner of the project (or an admin) may close
-- a high-priority task, and a new task whose title starts with "URGENT" is high priority.
--
-- before_task_create gets the new task's fields and context = {projectId, role, admin};
-- before_task_update gets the changed fields and context = {projectId, taskId, role,
-- admin, status, priority} (the task as it is now). Return true to let it through,
-- false, status, message to refuse, or {set = {...}} to change fields (they are checked
-- by the same schema a client's request is).

local function may_close(ctx)
    return ctx.admin or ctx.role == "owner"
end

function before_task_create(task)
    local ctx = task.context
    if task.status == "done" and (task.priority or "medium") == "high" and not may_close(ctx) then
        return false, 403, "only an owner may close a high-priority task"
    end
    if type(task.title) == "string" and task.title:sub(1, 6) == "URGENT" and task.priority == nil then
        return {set = {priority = "high"}}
    end
    return true
end

function before_task_update(task)
    local ctx = task.context
    local priority = task.priority or ctx.priority
    if task.status == "done" and ctx.status ~= "done" and priority == "high"
        and not may_close(ctx) then
        return false, 403, "only an owner may close a high-priority task"
    end
    return true
end
