-- Password policy for the user plugin: refuse the passwords every cracker tries first,
-- and a password equal to the username. Runs on registration (and admin create) and on
-- updates that change the password. Extend COMMON as you like; compare lower-cased.
--
-- before_user_register gets {username, email, firstName, lastName, password};
-- before_user_update gets the changed fields and {id} (no username: it cannot change).

COMMON = {}
for _, p in ipairs({
    "password", "password1", "password12", "password123", "password1234", "passw0rd",
    "p@ssw0rd", "p@ssword", "12345678", "123456789", "1234567890", "123123123",
    "11111111", "00000000", "87654321", "12341234", "qwertyui", "qwerty123", "qwertyuiop",
    "1q2w3e4r", "1qaz2wsx", "asdfghjk", "zaq12wsx", "abc12345", "abcd1234", "iloveyou",
    "sunshine", "princess", "football", "baseball", "superman", "starwars", "whatever",
    "trustno1", "letmein1", "welcome1", "welcome123", "admin123", "administrator",
    "changeme", "default1", "monkey123", "dragon123", "master123", "shadow123",
    "computer", "internet", "michelle", "jennifer", "charlie1", "panthera", "panthera123",
}) do
    COMMON[p] = true
end

local function check(user)
    local password = user.password
    if type(password) ~= "string" then
        return true -- not changing the password
    end
    local lower = password:lower()
    if COMMON[lower] then
        return false, 400, "password is too common"
    end
    if type(user.username) == "string" and lower == user.username:lower() then
        return false, 400, "password must not be the username"
    end
    return true
end

function before_user_register(user)
    return check(user)
end

function before_user_update(user)
    return check(user)
end
