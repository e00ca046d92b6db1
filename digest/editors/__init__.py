"""Editors: who may sign in to the desk (argon2id password hashes, sign-in sessions).

`store` holds every function on the tables in `models`; the CLI (`digest editors ...`)
and the web app's sign-in both go through it.
"""
