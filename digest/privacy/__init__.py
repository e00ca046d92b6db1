"""Data requests (GDPR articles 15 and 17) about one email address.

`export.person(session, settings, email)` gathers everything stored about the address from
a list of collectors (`export.COLLECTORS`); `erase.person(...)` removes it everywhere through
a list of erasers (`erase.ERASERS`) and keeps only a keyed hash of the address
(subscribers.erasures) so no import, sign-up or API call can add it again. A part of digest
that stores personal data adds one collector and one eraser.
"""
