"""GNN -> traccc bridge: GNN proto-tracks seed a traccc-style combinatorial Kalman filter.

``config``: traccc's finding / fitting / parameter-estimation configuration, mapped onto taas'
CKF and fitter; ``bridge``: proto-tracks -> surface-sorted measurements, seed triplets, start
parameters; ``stages``: the ``prototrack_seeding`` and ``prototrack_ckf`` stage bases (the
``acorn_traccc`` pipeline runs them between track building and the ambiguity resolution).
"""
