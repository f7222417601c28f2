"""auditlake's collection engine: one engine, small vendor adapters.

Layout: `http` talks to vendors, `state` keeps each stream's cursor and lease in DynamoDB, `archive` writes
the S3 objects, `engine` runs the windows, `lambda_handler` wires them to Lambda and Powertools.
"""
