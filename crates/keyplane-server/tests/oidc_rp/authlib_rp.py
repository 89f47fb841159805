"""A relying party built on Authlib, against a running Keyplane (tests/oidc_authlib.rs).

Discovers the provider, starts the code flow with PKCE S256, nonce and acr_values, lets the
"browser" (an HTTP request carrying the user's session) follow the authorization URL, exchanges
the code, validates the ID token with Authlib's OpenID Connect claims rules against the JWKS,
reads userinfo, refreshes, and replays the spent refresh token. Prints what it saw as JSON.
Every check that fails raises, and the process exits non-zero.
"""

import json
import os
import sys
import warnings
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

warnings.simplefilter("ignore")  # authlib.jose announces its successor; it still validates
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

issuer = os.environ["ISSUER"]
client_id = os.environ["CLIENT_ID"]
client_secret = os.environ["CLIENT_SECRET"]
redirect_uri = os.environ["REDIRECT_URI"]
browser_session = os.environ["BROWSER_SESSION"]

meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == issuer, meta
assert "S256" in meta["code_challenge_methods_supported"], meta

client = OAuth2Session(
    client_id,
    client_secret,
    scope="openid profile offline_access",
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
verifier = generate_token(48)
nonce = generate_token(20)
url, state = client.create_authorization_url(
    meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, acr_values="aal2"
)

# The browser, signed in to Keyplane, follows the URL; Keyplane sends it back with a code.
answer = requests.get(
    url, headers={"Authorization": "Bearer " + browser_session}, allow_redirects=False, timeout=10
)
assert answer.status_code in (302, 303), (answer.status_code, answer.text)
location = answer.headers["Location"]
returned = parse_qs(urlparse(location).query)
assert returned["state"] == [state], returned
assert returned["iss"] == [issuer], returned

token = client.fetch_token(
    meta["token_endpoint"], authorization_response=location, code_verifier=verifier
)

jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={
        "iss": {"essential": True, "values": [issuer]},
        "aud": {"essential": True, "values": [client_id]},
        "acr": {"essential": True, "values": ["aal2", "aal3"]},
    },
    claims_params={"nonce": nonce, "client_id": client_id},
)
claims.validate(leeway=30)

userinfo = client.get(meta["userinfo_endpoint"], timeout=10).json()

first_refresh = token["refresh_token"]
refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=first_refresh)
replay_error = None
try:
    client.refresh_token(meta["token_endpoint"], refresh_token=first_refresh)
except OAuthError as e:
    replay_error = e.error

json.dump(
    {
        "sub": claims["sub"],
        "acr": claims["acr"],
        "amr": claims["amr"],
        "auth_time": claims["auth_time"],
        "preferred_username": claims.get("preferred_username"),
        "userinfo": userinfo,
        "refresh_rotated": refreshed["refresh_token"] != first_refresh,
        "replay_error": replay_error,
    },
    sys.stdout,
)
