"""The served /openapi.json, checked by a real OpenAPI 3.0 validator and against the
routes the server really has.

``validate(doc)``               run @apidevtools/swagger-parser (npm, installed by
                                ``scripts/dev`` with ``npm ci``) on the document;
                                AssertionError with its report when it is not valid.
``routes(server)``              [(METHOD, "/v1/things/:id", owner)] from ``pantherad -t``.
``assert_lists_every_route(server, doc)``  every route of every loaded plugin is an
                                operation of ``doc`` (":id" written "{id}").
"""
import json
import os
import re
import subprocess
import tempfile

from panthera_server import REPO

VALIDATOR = os.path.join(REPO, "tests", "api", "openapi_validate.js")


def validate(doc):
    module = os.path.join(REPO, "node_modules", "@apidevtools", "swagger-parser")
    assert os.path.isdir(module), "node_modules is missing: run `npm ci` at the repo root " \
                                  "(scripts/dev test does)"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    try:
        p = subprocess.run(["node", VALIDATOR, f.name], capture_output=True, text=True,
                           timeout=120)
    finally:
        os.unlink(f.name)
    assert p.returncode == 0 and p.stdout.strip() == "valid", p.stdout + p.stderr


def routes(server):
    rc, out, err = server.check_config()
    assert rc == 0, err
    found = []
    listing = out.split("routes:", 1)[1]
    for line in listing.splitlines():
        m = re.match(r"^\s+([A-Z]+)\s+(/\S*)\s+(\S+)$", line)
        if m:
            found.append(m.groups())
    assert found, out
    return found


def assert_lists_every_route(server, doc):
    missing = []
    for method, pattern, owner in routes(server):
        path = re.sub(r":([^/]+)", r"{\1}", pattern)
        if method.lower() not in doc["paths"].get(path, {}):
            missing.append((method, path, owner))
    assert not missing, missing
