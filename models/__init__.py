"""Online fault models: pure code, no I/O, no clock.

``readings`` gathers normalised meter samples into one reading per connector and
instant; ``features`` turns successive readings into physics features in telemetry
time; ``detectors`` scores them behind River's ``learn_one``/``score_one`` interface.
The faults flow (``flows/faults``) keys them by charge point and snapshots them.
"""
