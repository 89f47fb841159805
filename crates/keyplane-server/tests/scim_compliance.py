"""Runs the PyPI package scim2-tester against a Keyplane server and prints every check's
result as one JSON list on stdout. Called by tests/scim_compliance.rs with
PYTHONPATH=.test-data/pypi, the base URL (…/scim/v2) and a SCIM token as arguments."""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server

base_url, token = sys.argv[1], sys.argv[2]
http = Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
client = SyncSCIMClient(http)
results = check_server(client)
print(
    json.dumps(
        [
            {
                "status": r.status.name,
                "title": r.title,
                "resource_type": r.resource_type,
                "reason": r.reason,
                "tags": sorted(r.tags or []),
            }
            for r in results
        ]
    )
)
