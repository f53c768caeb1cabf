#!/usr/bin/env python3
"""Seeds a running sandbox with one of everything Smile's API reads (accounts at several
providers, an analysed payslip, an invite, templates, a subscription), waits until the data
is there, and prints a schemathesis.toml that hands those ids to every operation that takes
one, so that the fuzzer reads real records instead of only 404s.

Operations that delete get an id of their own: deleting the record the reads use would turn
them into 404s halfway through the run.

usage: fuzz-seed.py BASE_URL API_KEY API_SECRET > schemathesis.toml
"""
import base64
import json
import sys
import time
import urllib.error
import urllib.request

BASE, KEY, SECRET = sys.argv[1:4]
BASIC = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
SAMPLE = "payslip-george-2025-11.pdf"


def call(method, path, body=None, auth=BASIC):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", auth)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["data"]
    except urllib.error.HTTPError as error:
        sys.exit(f"fuzz-seed: {method} {path}: {error.code} {error.read()[:300]!r}")


def eventually(what, check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"fuzz-seed: {what} did not happen within {seconds} s")


def user():
    created = call("POST", "/v1/users")
    return created["user"]["id"], "Bearer " + created["token"]["accessToken"]


def connect(token, provider, login, password, mfa=None):
    account = call("POST", "/link/v1/accounts", {"providerId": provider, "username": login, "password": password}, token)
    if mfa:
        account = call("POST", f"/link/v1/accounts/{account['id']}/mfa", {"code": mfa}, token)
    return account["id"]


def first(kind, **query):
    path = f"/v1/{kind}?" + "&".join(f"{k}={v}" for k, v in query.items())
    return eventually(f"a record in /v1/{kind}", lambda: [i["id"] for i in call("GET", path)["items"]])[0]


def archive(user_id):
    with urllib.request.urlopen(f"{BASE}/sandbox/samples/{SAMPLE}", timeout=10) as response:
        content = base64.b64encode(response.read()).decode()
    raw = [{"fileExtensionType": "PDF", "fileName": SAMPLE, "fileContent": content}]
    created = call("POST", "/v1/archives", {"userId": user_id, "fileType": "PAYSLIP", "rawFiles": raw})
    eventually("the payslip's analysis", lambda: call("GET", f"/v1/archives/{created['id']}")["state"]["status"] == "ANALYZED")
    return created["id"]


def invite_template(name):
    page = {"header": "Share your income", "description": "It takes two minutes.", "button": "Start"}
    return call("POST", "/v1/inviteTemplates", {
        "name": name, "company": {"name": "Acme", "logoUrl": "https://acme.example/logo.png"},
        "email": {"sendEmail": True, "senderName": "Acme", "replyAddress": "help@acme.example",
                  "subject": "Share your income", "body": "Follow the link."},
        "landingPage": page, "successPage": page,
    })["id"]


def consent_template():
    return call("POST", "/v1/consentTemplates", {"consentType": "DATA_SHARING", "version": "1",
                                                  "consentText": "I agree to share my data."})["id"]


def main():
    george, token = user()
    accounts = {
        "sss": connect(token, "sss", "gpalomero1234@smileapi.io", "123456"),
        "lazada": connect(token, "lazada", "gpalomero1234@smileapi.io", "123456"),
        "nbi_ph": connect(token, "nbi_ph", "gpalomero1234@smileapi.io", "123456"),
        "grab": connect(token, "grab", "+63 9559991234", "123456", mfa="1234"),
        "xyzbank": connect(token, "xyzbank", "gpalomero1234@smileapi.io", "123456", mfa="1234"),
    }
    _, spare_token = user()
    spare_account = connect(spare_token, "sss", "gpalomero1234@smileapi.io", "123456")
    reset_user, _ = user()
    ids = {
        "users": george, "accounts": accounts["grab"], "archives": archive(george), "uploads": None,
        "tasks": first("tasks", userId=george), "identities": first("identities", userId=george),
        "employments": first("employments", userId=george), "incomes": first("incomes", userId=george),
        "contributions": first("contributions", userId=george), "ratings": first("ratings", userId=george),
        "transactions": first("transactions", userId=george), "documents": first("documents", userId=george),
        "eincomes": first("eincomes", userId=george), "insights": first("insights", userId=george),
        "liabilities": first("liabilities", userId=george), "links": first("links", userId=george),
        "providers": "grab", "inviteTemplates": invite_template("reads"),
    }
    ids["uploads"] = ids["archives"]
    invite = call("POST", "/v1/invites", {"fullName": "George Palomero", "email": "gpalomero1234@smileapi.io",
                                          "templateId": ids["inviteTemplates"]})["id"]
    ids["invites"] = invite
    webhook = call("POST", "/v1/webhooks", {"name": "reads", "url": "https://example.com/hooks", "eventTypes": ["ALL_EVENTS"], "active": True, "secret": "whsec_c2VlZC1zZWNyZXQtZm9yLXRoZS1mdXp6ZXI="})["id"]
    ids["webhooks"] = webhook
    doomed = {
        "accounts": spare_account, "archives": archive(george),
        "webhooks": call("POST", "/v1/webhooks", {"name": "deleted", "url": "https://example.com/gone", "eventTypes": ["ALL_EVENTS"], "active": True, "secret": "whsec_c2VlZC1zZWNyZXQtZm9yLXRoZS1mdXp6ZXI="})["id"],
        "consentTemplates": consent_template(), "inviteTemplates": invite_template("deleted"),
    }

    def operation(name, **parameters):
        values = ", ".join(f'"{k}" = "{v}"' for k, v in parameters.items())
        print(f'[[operations]]\ninclude-name = "{name}"\nparameters = {{ {values} }}\n')

    print("# Written by scripts/fuzz-seed.py: real ids for the operations that take one.\n")
    for kind, value in ids.items():
        operation(f"GET /{kind}/{{id}}", id=value)
    for kind, value in doomed.items():
        operation(f"DELETE /{kind}/{{id}}", id=value)
    operation("PUT /inviteTemplates/{id}", id=ids["inviteTemplates"])
    operation("GET /invites/{inviteId}/logs", inviteId=invite)
    operation("GET /users/{id}/payload", id=george)
    operation("POST /users/{id}/resetSession", id=reset_user)
    operation("GET /accounts/{id}/payload", id=accounts["grab"])
    operation("POST /accounts/{id}/exports/generate", id=accounts["grab"])
    operation("POST /accounts/{accountId}/disableMonitor", accountId=accounts["sss"])
    operation("GET /archives/-/payslips/queryPrediction", archiveId=ids["archives"])
    operation("POST /tokens", userId=george)


main()
