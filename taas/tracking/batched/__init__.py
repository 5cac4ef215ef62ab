"""One implementation of the track math, two devices: the numba row loops of the CPU chain and
torch batched over tracks (CUDA, or torch's CPU device in CI).

Design. The formulas — helix and plane / cylinder / disc intersections, the bound <-> free
Jacobians and the chained transport Jacobian, Highland scattering, Bethe energy loss and
straggling, passive-material noise, the gain-matrix update, the predicted chi2 and the RTS
smoother step — are written once, in ``formulas.py``, against a small interface ``ops``
(elementwise math, ``select``, small dense linear algebra with explicit sizes).
``flavours.load_formulas`` executes that one source twice, as two modules:

* ``flavours.NUMBA``: ``ops`` = ``numba_ops`` (``njit`` kernels, scalar math, loops); an
  argument is one track's scalar or (6, 6) array. ``taas.tracking.helix``, ``parameters``,
  ``propagation``, ``material`` and ``kalman`` call these kernels per row, so the CPU chain
  runs this text (its tracks at ``medium`` came out bit-identical to the hand-written kernels
  it replaced);
* ``torch_ops.FORMULAS``: ``ops`` = ``torch_ops``; an argument carries every track, the track
  axis last (``cov[i, j]`` is a vector over tracks), so each statement is one batched torch
  operation on whatever device the tensors live.

What exists twice, and why: (1) the ``ops`` primitives (``matmul_into``, ``solve_into``, ...):
generic linear algebra, loops in numba and batched tensor operations in torch, the point of the
flavours; (2) the *sequence* of the filter (which noise is added when, where the energy loss
applies): ``taas.tracking.kalman.kalman_fit`` batches tracks (every length together, the
running prefix per step) in numpy around the numba kernels, ``fit.kalman_fit_torch`` does the
same steps in torch, line by line; (3) two
trivial expressions the torch step needs on the device and whose numpy homes are outside
``taas.tracking``: ``Detector.inside_bounds`` (``ckf_step.ModuleTensors.inside_bounds``) and
``parameters.bound_to_free`` (``fit.bound_to_free_torch``). ``tests/tracking/test_batched_*.py``
hold each pair to the same numbers: formulas per flavour on edge cases, whole fits on analytic
helices and on a simulated event, and the CKF step on a real step's (candidate, module) pairs.

Modules: ``constants`` (physical constants and parameter slots), ``formulas`` (the text),
``flavours`` / ``numba_ops`` / ``torch_ops`` (the two bindings), ``fit`` (Kalman fit in torch,
the ``gpu`` backend of ``track_fit``), ``ckf_step`` (the CKF's per-layer prediction, chi2 and
update in torch). Importing this package imports neither torch nor the numba kernels.
"""
