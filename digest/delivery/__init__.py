"""The delivery stage: rendered issue -> per-recipient bytes -> transport -> ledger.

`message` splices one recipient into bytes prepared once per issue (`dkim` signs them);
`transports` hand them to SMTP or an outbox folder; `ledger` records outcomes and
`claims` lets several senders share one send; `sender` runs a send and `worker` joins
sends in progress. `campaign` is the manager above them: build, start and test-send.
"""
