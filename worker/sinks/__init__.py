"""Secret sinks: where a rotation publishes a secret the destination itself must learn.

:mod:`.base` is the Protocol (publish pending, promote, discard); :mod:`.aws_secrets_manager`
the AWS Secrets Manager implementation; :mod:`.aws` the boto3 plumbing it shares with the
``aws-iam`` secret source; :mod:`.build` turns a spec from :mod:`config.secret_sinks` into
a live sink.
"""
