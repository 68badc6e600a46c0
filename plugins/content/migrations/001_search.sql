-- Posts and articles (API.md "Content"), searchable with PostgreSQL full-text search.
--
-- unaccent and pg_trgm are "trusted" extensions (PostgreSQL 13+, Debian's postgresql-15
-- ships both in the server package): the database owner may create them, so the
-- migration does it itself and operators need no superuser step as long as the role in
-- [postgres] conninfo owns the database (scripts/lib/services.sh creates it so).
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Two languages share one index, so no language's stemmer may mangle the other's words:
-- "simple" (lower-casing, no stop words) after unaccent, so "café" and "cafe" match.
CREATE TEXT SEARCH CONFIGURATION content_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION content_search
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple;

-- array_to_string is only STABLE (element output functions may depend on settings); for
-- text[] it is not, and a generated column needs an IMMUTABLE expression.
CREATE FUNCTION content_tags_text(tags text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string(tags, ' ') $$;

-- Timestamps as the API shows them (RFC 3339, UTC, milliseconds).
CREATE FUNCTION content_ts(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;


-- Tags as stored: lower-case, each once, in the order first given.
CREATE FUNCTION content_tags_norm(tags json) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(array_agg(t ORDER BY first), '{}')
      FROM (SELECT lower(value) AS t, min(ord) AS first
              FROM json_array_elements_text(tags) WITH ORDINALITY AS e(value, ord)
             GROUP BY lower(value)) s
    $$;
