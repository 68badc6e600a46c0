CREATE TABLE IF NOT EXISTS migbad_first (id int);
