"""Site load management, pure: who gets how much current (``allocator``), in which order
(``priority``), the max-min fair share on three phases (``fill``), the inputs
(``inputs``) and which changes are worth sending to a station (``hysteresis``).

No I/O: the smart-charging flow (later) feeds it the site's limit, meter and sessions and
sends what ``hysteresis.updates_to_send`` returns. See docs/smart-charging.md."""
