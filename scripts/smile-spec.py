#!/usr/bin/env python3
"""Prints Smile's published OpenAPI spec as JSON for the fuzzer, with two corrections: ten of
its operations list only their success, while Smile's contract says every endpoint answers
its standard errors (400 INVALID_CREDENTIALS or INVALID_PARAMETERS, 401, 403, 404, 415, 429,
500, 501, 503, 504, each in the envelope). Those operations get the spec's own
`Standard-Errors` response for the statuses they leave out. And the spec lists 415 responses
whose `code` enum has no code for a 415: Smile's documentation answers 415 with
`UNSUPPORTED_TYPE` (an archive file that is no PDF, PNG, JPG or TIFF), so the enum gains it.
Nothing else is changed: every schema, parameter and success response is Smile's.

usage: smile-spec.py PATH_TO_openapi-v1.yaml > smile-spec.json
"""
import json
import sys

import yaml

STANDARD = ["400", "401", "403", "404", "415", "429", "500", "501", "503", "504"]
METHODS = {"get", "put", "post", "delete", "patch"}

spec = yaml.safe_load(open(sys.argv[1]))
for item in spec["paths"].values():
    for method, operation in item.items():
        if method not in METHODS:
            continue
        for status in STANDARD:
            operation["responses"].setdefault(status, {"$ref": "#/components/responses/Standard-Errors"})
codes = spec["components"]["schemas"]["ObjectMetadataRefCode"]["enum"]
if "UNSUPPORTED_TYPE" not in codes:
    codes.append("UNSUPPORTED_TYPE")
json.dump(spec, sys.stdout, default=str)
