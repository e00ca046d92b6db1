"""The REST API under /api/v1/: API keys (`keys`), the request machinery and the OpenAPI
document (`spec`), the JSON shapes (`schemas`) and one module per concept (`picks`,
`editions`, `newsletters`, `subscribers`), assembled by `routes`.

Requests carry `Authorization: Bearer KEY`; keys are stored hashed, have scopes (picks,
subscribers, stats) and optionally one newsletter. Validation uses the same models as the
command line (digest.editorial.picks.PickIn ...). docs/api.md is the guide.
"""
