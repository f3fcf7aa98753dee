"""Machinery the τ domains share (τ³-airline, τ²-retail): pinned data folders (:mod:`.data`),
copy-on-write DB state (:mod:`.state`), tasks (:mod:`.tasks`), the verifier (:mod:`.reward`),
tool plumbing and the guarded calculator (:mod:`.tools`), the scripted stand-in user
(:mod:`.scripted_user`), reference turns (:mod:`.demonstration`) and the env base
(:mod:`.env`). A domain module holds only its data spec, its tools and its state's tables,
tied together in a :class:`~.domain.TauDomain`.
"""
