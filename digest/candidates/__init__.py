"""Candidates: stories from the newsroom's own site (DIGEST_CANDIDATE_FEEDS), polled by the
scheduler with conditional GETs and offered on the desk for a one-click pick.

`models` holds the tables, `poll` fetches and parses the feeds (untrusted input, checked by
the same PickIn model as every pick), `store` lists candidates for a newsletter with
"already sent in edition X" marks and turns one into a pick.
"""
