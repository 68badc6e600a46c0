-- The typo fallback on its own (README.md, "Search"). content_tsquery (004) probed the
-- exact query first, a second GIN scan on every search only to learn whether the exact
-- query matched anything, then built the fallback. The list query now runs the exact
-- websearch_to_tsquery by itself and asks for this fallback only when that found nothing
-- (posts.c), so a search that matches pays for one scan. content_tsquery stays: workers
-- of the previous version still call it while a reload replaces them.
--
-- The fallback, as before: negated words and `or` dropped, each remaining word of 1-2
-- characters becomes a prefix ('ab':*) and each longer one its prefix OR up to three
-- similar indexed words (pg_trgm), all ANDed. Only words of letters and digits are used,
-- so the text handed to to_tsquery never holds a quote. With no such word, the exact
-- query (which matches nothing).
CREATE FUNCTION content_tsquery_fuzzy(q text) RETURNS tsquery
    LANGUAGE plpgsql STABLE STRICT
    AS $$
DECLARE
    fuzzy text;
BEGIN
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
        RETURN websearch_to_tsquery('content_search', q);
    END IF;
    RETURN to_tsquery('content_search', fuzzy);
END
$$;
