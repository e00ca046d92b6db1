"""The OpenAPI document is valid OpenAPI 3.1, covers every API route the app serves, and
every operation in it answers as documented: each is called on a real server, its status
must be one the document lists and its body must validate against the documented schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from openapi_spec_validator import validate
from starlette.routing import Mount

from digest.api import keys
from digest.store.engine import session_scope
from tests.sending import add_picks, add_subscribers, subscribe

METHODS = ("get", "post", "patch", "delete")


def schema_of(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any] | None:
    content = response.get("content", {}).get("application/json")
    if content is None:
        return None
    return {**content["schema"], "components": doc["components"]}


def check(doc: dict[str, Any], op: dict[str, Any], r: Any, label: str) -> None:
    documented = op["responses"]
    assert str(r.status_code) in documented, f"{label}: {r.status_code} {r.text[:300]}"
    schema = schema_of(doc, documented[str(r.status_code)])
    if schema is None:
        assert not r.content, label
        return
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(r.json()), key=str)
    assert not errors, f"{label}: {errors[0].message}"


def test_the_document_is_valid_and_every_route_answers_as_documented(serve_web) -> None:
    srv = serve_web()
    add_picks(srv.engine, srv.settings, 3)
    add_subscribers(srv.engine, 2, settings=srv.settings)
    member = subscribe(srv.engine, srv.settings, "olga@example.org", "Olga")
    with session_scope(srv.engine) as s:
        key = keys.create(s, "everything")[1]
        weak = keys.create(s, "weak", ["stats"])[1]

    with srv.client() as anon:
        doc = anon.get("/api/v1/openapi.json").json()
    validate(doc)  # openapi-spec-validator: a valid OpenAPI 3.1 document
    assert doc["openapi"] == "3.1.0" and doc["servers"][0]["url"] == srv.url + "/api/v1"

    # Every route the app serves under /api/v1 is documented, and nothing else is.
    mount = next(r for r in srv.app.routes if isinstance(r, Mount) and r.path == "/api/v1")
    served = {
        (m.lower(), route.path.replace(":int", ""))
        for route in mount.routes
        for m in (route.methods or ())
        if m != "HEAD" and route.path != "/openapi.json"
    }
    documented = {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}
    assert served == documented

    with srv.client(headers={"Authorization": f"Bearer {key}"}) as c:
        pick_id = c.get("/api/v1/picks").json()["picks"][0]["id"]
        edition = c.get("/api/v1/editions").json()["editions"][0]["key"]
    values = {"pick_id": pick_id, "key": edition, "email": member.email}

    # Deletions last, so the things they remove exist for the other calls.
    ops = [(p, m, item[m]) for p, item in doc["paths"].items() for m in item if m in METHODS]
    ops.sort(key=lambda o: (o[1] == "delete", o[0]))
    assert len(ops) == 14
    with (
        srv.client(headers={"Authorization": f"Bearer {key}"}) as c,
        srv.client() as anon,
        srv.client(headers={"Authorization": f"Bearer {weak}"}) as w,
    ):
        for path, method, op in ops:
            url = "/api/v1" + path.format(**values)
            label = f"{method.upper()} {path}"
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            example = body.get("example")
            if body:
                assert example is not None, f"{label}: no example"
            r = c.request(method, url, json=example)
            check(doc, op, r, label)
            assert r.status_code < 300, f"{label}: {r.status_code} {r.text[:200]}"
            if r.status_code == 201:
                assert r.headers["location"].startswith("/api/v1/")
            check(doc, op, anon.request(method, url, json=example), label + " without a key")
            scope = op["security"][0]["bearer"]
            if scope and scope != ["stats"]:
                denied = w.request(method, url, json=example)
                assert denied.status_code == 403, label
                check(doc, op, denied, label + " outside the scope")
            if body and method != "delete":
                bad = c.request(method, url, json={"no such field": 1})
                assert bad.status_code == 422, label
                check(doc, op, bad, label + " with a bad body")
