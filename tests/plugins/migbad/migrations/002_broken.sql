-- The first statement works; the second does not: the whole migration must roll back.
CREATE TABLE migbad_half_done (id int);
SELEKT 1;
