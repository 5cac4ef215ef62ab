"""Track model, propagation and the Kalman fit shared by the fitting stage and the CKF.

Modules: ``parameters`` (bound / free / perigee sets and conversions), ``helix`` (analytic
helix in a solenoid, plane and beam-line intersections), ``propagation`` (bound-to-bound with
the analytic transport Jacobian), ``material`` (Highland multiple scattering), ``estimation``
(helix through space points), ``kalman`` (batched filter + RTS smoother, ``predicted_chi2``),
``fitter`` (proto-tracks in, ``Tracks`` out).
"""

from taas.tracking.estimation import estimate_parameters, loose_covariance
from taas.tracking.fitter import TrackFitConfig, fit_prototracks, tracks_to_perigee
from taas.tracking.kalman import KalmanResult, Surfaces, kalman_fit, kalman_update, predicted_chi2
from taas.tracking.parameters import (
    bound_to_free,
    bound_to_perigee,
    free_to_bound,
    free_to_perigee,
    perigee_to_free,
)
from taas.tracking.propagation import Propagation, propagate

__all__ = [
    "KalmanResult", "Propagation", "Surfaces", "TrackFitConfig", "bound_to_free",
    "bound_to_perigee", "estimate_parameters", "fit_prototracks", "free_to_bound",
    "free_to_perigee", "kalman_fit", "kalman_update", "loose_covariance", "perigee_to_free",
    "predicted_chi2", "propagate", "tracks_to_perigee",
]
