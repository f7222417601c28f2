"""The Ashby collector's Lambda entry point (template.yaml: Handler ashby_lambda.handler)."""

from ashby_collector import Ashby

from auditlake.lambda_handler import make_handler

handler = make_handler(Ashby)
