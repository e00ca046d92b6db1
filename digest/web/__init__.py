"""The web app: the editors' desk (/desk/) and the subscribers' pages.

`digest.web.app.create_app(settings)` builds the Starlette application; `digest serve`
runs it with uvicorn. The web app owns no tables: editors' accounts are
`digest.editors`, rate limits `digest.store.throttle`.
"""
