-- Search helpers: the typo fallback's word list and the query builder (README.md,
-- "Search").

-- Every indexed word of 3+ letters or digits once, with a trigram index: when a query
-- matches nothing exactly, each of its words is widened to the indexed words that look
-- like it ("postgrse" -> "postgres"). Words only ever come in (a word no post uses any
-- more just widens a query to nothing), so the trigger never deletes. Lexemes are
-- inserted in sorted order, so two concurrent writers cannot deadlock on them.
CREATE TABLE content_words (word text PRIMARY KEY);
CREATE INDEX content_words_trgm ON content_words USING gin (word gin_trgm_ops);

CREATE FUNCTION content_words_add() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO content_words (word)
        SELECT lexeme FROM unnest(NEW.search)
         WHERE length(lexeme) >= 3 AND lexeme ~ '^[[:alnum:]]+$'
         ORDER BY lexeme
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER content_words_add AFTER INSERT OR UPDATE OF title, body, tags
    ON content_posts FOR EACH ROW EXECUTE FUNCTION content_words_add();

-- The tsquery for a user's search text. The text goes through websearch_to_tsquery only
-- (it never raises: "phrases", -not and `or` are its syntax, anything else is words).
-- When that matches no published post, the fallback: negated words and `or` dropped,
-- each remaining word of 1-2 characters becomes a prefix ('ab':*) and each longer one
-- its prefix OR up to three similar indexed words (pg_trgm), all ANDed. Only words of
-- letters and digits are used, so the text handed to to_tsquery never holds a quote.
CREATE FUNCTION content_tsquery(q text) RETURNS tsquery
    LANGUAGE plpgsql STABLE STRICT
    AS $$
DECLARE
    exact tsquery := websearch_to_tsquery('content_search', q);
    fuzzy text;
BEGIN
    IF numnode(exact) > 0 AND EXISTS (
        SELECT 1 FROM content_posts WHERE search @@ exact AND status = 'published') THEN
        RETURN exact;
    END IF;
    SELECT string_agg(term, ' & ') INTO fuzzy FROM (
        SELECT CASE WHEN length(w) < 3 THEN '''' || w || ''':*'
               ELSE '(''' || w || ''':*' || coalesce((
                   SELECT string_agg(' | ''' || c.word || '''', '')
                     FROM (SELECT word FROM content_words WHERE word % w
                            ORDER BY word <-> w, word LIMIT 3) c), '') || ')'
               END AS term
          FROM (SELECT DISTINCT lexeme AS w
                  FROM unnest(to_tsvector('content_search',
                                          regexp_replace(q, '(^|\s)-\S*', ' ', 'g')))
                 WHERE lexeme ~ '^[[:alnum:]]+$' AND lexeme <> 'or') words) t;
    IF fuzzy IS NULL THEN
        RETURN exact;
    END IF;
    RETURN to_tsquery('content_search', fuzzy);
END
$$;

-- Text as HTML with nothing in it a browser reads as markup: the highlight is this
-- with only ts_headline's <b> marks added.
CREATE FUNCTION content_html_escape(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$
    SELECT replace(replace(replace(replace(replace(t, '&', '&amp;'), '<', '&lt;'), '>',
                   '&gt;'), '"', '&quot;'), '''', '&#39;')
    $$;
