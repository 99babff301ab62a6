"""Fake identity providers for the sandbox, written from ``idp-api.md`` (the vendors' docs).

``okta`` / ``okta_token``: an Okta org's client-secret management API and the ``default``
custom authorization server; ``entra_graph`` / ``entra_token``: Microsoft Graph application
passwords and the Entra v2.0 token endpoint. ``state`` holds both; ``traffic`` journals IdP
requests and injects IdP faults; ``control`` is their ``/_sandbox/idp`` control surface.

Nothing is imported here: :mod:`sandbox.runtime` imports ``sandbox.idp.state`` while the route
modules import the runtime.
"""
