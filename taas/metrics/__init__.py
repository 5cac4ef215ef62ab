"""Physics evaluation shared by every pipeline: truth matching, rates, graphs, fits, TrackML.

Modules, one job each: ``truth_link`` (which particle made each measurement), ``config``
(matching style and cuts), ``matching`` (track-particle matching), ``rates`` (efficiency, fake
and duplicate rates with intervals), ``resolution`` (pulls), ``graph`` (edge efficiency and
purity), ``trackml_score`` (the challenge score), ``evaluate`` (per event and per run, and
``metrics.json``), ``plots`` (PNGs from a summary).

Import the module you need: the package imports nothing, so reading a matching style (the CLI's
parser) does not load scipy.
"""
