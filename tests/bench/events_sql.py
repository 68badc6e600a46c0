"""The SQL of server/events.c, read from the C source as the checkout has it, for the
benchmarks that run it outside the server (emit_instr.sh, relay_plan.sh).

As a command: `events_sql.py NAME...` prints each named string constant followed by a
`;`, and `schema` stands for the host's event-log migrations in the order migrate.c
applies them."""
import os
import re
import sys

EVENTS_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "server",
                        "events.c")
SCHEMA = ("events_schema_sql", "events_schema_prune_by_id_sql",
          "events_schema_deliveries_sql", "events_schema_frontier_by_id_sql")


def const(name, src=None):
    """The C string constant `name` (adjacent literals joined, escapes decoded)."""
    src = src if src is not None else open(EVENTS_C).read()
    m = re.search(r'const char ' + name + r'\[\] =\s*((?:"(?:[^"\\]|\\.)*"\s*)+);', src)
    if not m:
        raise SystemExit("events_sql.py: no constant %s in %s" % (name, EVENTS_C))
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).encode().decode(
        "unicode_escape")


if __name__ == "__main__":
    text = open(EVENTS_C).read()
    for arg in sys.argv[1:]:
        for name in SCHEMA if arg == "schema" else (arg,):
            print(const(name, text) + ";")
