CREATE TABLE migkit_applied (n int NOT NULL);
INSERT INTO migkit_applied (n) VALUES (1);
