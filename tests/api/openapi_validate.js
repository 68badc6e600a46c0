// Validate an OpenAPI document (a file path, or "-" for stdin) with
// @apidevtools/swagger-parser, which checks it against the OpenAPI 3.0 JSON Schema and
// resolves every $ref. Prints "valid" and exits 0, or prints the errors and exits 1.
// Installed by `npm ci` at the repo root (scripts/dev does it); used by
// tests/api/test_route_specs.py.
"use strict";
const fs = require("fs");
const path = require("path");
const SwaggerParser = require(path.join(__dirname, "..", "..", "node_modules",
                                        "@apidevtools", "swagger-parser"));

const source = process.argv[2] || "-";
const doc = JSON.parse(fs.readFileSync(source === "-" ? 0 : source, "utf8"));
SwaggerParser.validate(doc)
  .then(() => { console.log("valid"); })
  .catch((err) => {
    console.log(err.message);
    if (err.details) console.log(JSON.stringify(err.details, null, 1).slice(0, 4000));
    process.exit(1);
  });
