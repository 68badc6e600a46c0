-- task_mentions joined the body's @names to users by
-- `lower(u.username) IN (lower(name), lower(rtrim(name, '.')))`: an OR per match, which
-- PostgreSQL can neither hash nor look up once per spelling. On tables that autovacuum
-- had not analyzed yet (a project just filled by an import, a fresh deployment), the plan
-- compared every match with every user: a comment mentioning 1,000 members took 500 ms
-- against 9 ms once analyzed (tests/bench/notification.sh, part (a)). Both spellings are
-- now unnested first and joined by equality, which hashes or uses users' lower(username)
-- index whatever the statistics say. Same answer: the members among the users either
-- spelling names, each once, in id order.
CREATE OR REPLACE FUNCTION task_mentions(project uuid, body text) RETURNS uuid[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT m.user_id ORDER BY m.user_id), '{}')
    FROM (SELECT DISTINCT lower(spelling) AS name
          FROM regexp_matches(body, '(?:^|[^A-Za-z0-9_.@])@([A-Za-z0-9_.]{3,30})', 'g') AS r(x),
               unnest(ARRAY[r.x[1], rtrim(r.x[1], '.')]) AS spelling) n
    JOIN users u ON lower(u.username) = n.name
    JOIN task_members m ON m.project_id = project AND m.user_id = u.id
$$;
