"""What readers read: counted story links, click counts, and the stats built on them.

- `links`: the signed `/r/{token}` links story links become at render time
  (DIGEST_CLICK_STATS=aggregate: the same link in every copy; per-subscriber: a
  reader's own signed part appended per recipient, digest.editorial.slots.READER).
- `filters`: which requests are counted (no HEAD, no known scanners or prefetchers,
  no bursts); `counting`: the counters in the store (`models`).
- `report`: per story and per edition, for `digest stats` and the desk.

The rules and why there is no open pixel: docs/stats.md.
"""
