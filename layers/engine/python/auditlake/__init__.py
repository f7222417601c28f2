"""auditlake's collection engine: one engine, small vendor adapters.

Layout: `http` talks to vendors, `state` keeps each stream's cursor, lease and digest-chain head in DynamoDB
(keyed by a `StreamKey`), `planning` decides the windows and spans (pure), `archive` writes the S3 objects, `digest`
signs the chains, `engine` runs the windows, `lambda_handler` wires them to Lambda and Powertools.
"""

# The one version number: the package (pyproject.toml reads it), the layer (this file is in it) and the template's
# AWS::ServerlessRepo::Application SemanticVersion (scripts/render_template.py writes it) all carry it. CHANGELOG.md
# says what each version holds.
__version__ = "0.2.0"
