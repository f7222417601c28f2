"""auditlake's collection engine: one engine, small vendor adapters.

Layout: `http` talks to vendors, `state` keeps each stream's cursor, lease and digest-chain head in DynamoDB
(keyed by a `StreamKey`), `planning` decides the windows and spans (pure), `archive` writes the S3 objects, `digest`
signs the chains, `engine` runs the windows, `lambda_handler` wires them to Lambda and Powertools.
"""
