"""Secret sources: where a rotation's new secret comes from, and where old ones are revoked.

:mod:`.base` is the Protocol; :mod:`.okta` and :mod:`.entra` the IdP adapters;
:mod:`.hooks` the ``command`` and ``http`` protocol for any other IdP; :mod:`.generate` the
random value for receivers that learn secrets another way; :mod:`.build` turns a spec from
:mod:`config.secret_sources` into a live source, and :mod:`.catalog` picks a destination's.
"""
