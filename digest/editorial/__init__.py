"""The editorial stage: picks -> issue (a frozen snapshot) -> render once -> preflight.

`picks` (and `pickimport` for files and feeds) validate what editors choose;
`editions` freezes them into an issue; `render` turns the snapshot into HTML and text
with slot markers (`slots`) where a message is personal; `preflight` checks the result.
Nothing here sends mail or knows about subscribers.
"""
