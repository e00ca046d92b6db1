"""The built-in email and page templates (shipped in the wheel as digest.templates).

Editors change the look here, or override single files in DIGEST_TEMPLATES_DIR.
"""
