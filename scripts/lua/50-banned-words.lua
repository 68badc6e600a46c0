-- Banned words for the content plugin: refuse a post about to be published, or a new
-- comment, whose text holds one of BANNED as a whole word (any case, accents as written).
-- Edit BANNED as you like (lower case). A refused request gets 400 with the message below;
-- nothing is stored and no event is emitted.
--
-- before_post_publish gets the fields a create or PUT sets ({title, body, kind, tags,
-- status}; a PUT only those it changes, plus id) whenever the result is a published post,
-- so a published post cannot be edited into one with a banned word either.
-- before_comment_create gets {postId, body}.

BANNED = {}
for _, w in ipairs({"spamword", "buy-followers", "casinobonus"}) do
    BANNED[w] = true
end

-- True when `text` holds a banned word: split on anything but letters, digits, '-', '_'
-- (bytes >= 0x80 count as letters, so UTF-8 words stay whole).
local function banned(text)
    if type(text) ~= "string" then
        return false
    end
    for word in text:gmatch("[%w_%-\128-\255]+") do
        if BANNED[word:lower()] then
            return true
        end
    end
    return false
end

function before_post_publish(post)
    if banned(post.title) or banned(post.body) then
        return false, 400, "the post contains a banned word"
    end
    for _, tag in ipairs(type(post.tags) == "table" and post.tags or {}) do
        if banned(tag) then
            return false, 400, "the post contains a banned word"
        end
    end
    return true
end

function before_comment_create(comment)
    if banned(comment.body) then
        return false, 400, "the comment contains a banned word"
    end
    return true
end
