"""The web app: the editors' desk (/desk/) and the subscribers' pages.

`digest.web.app.create_app(settings)` builds the Starlette application; `digest serve`
runs it with uvicorn. This package's __init__ stays import-light on purpose: the table
definitions in `digest.web.models` are imported by `digest.models` without Starlette.
"""
