"""How a simulated station answers the CSMS's commands, per OCPP version.

``v16.V16ChargePoint`` and ``v201.V201ChargePoint`` are ocpp library charge points
with one ``@on(Action...)`` handler per command; ``client.StationClient`` (their
common base) records every CALL, lets the station's behaviours answer first
(``ingest.simulator.behaviours``) and runs what a handler asked to do after its answer
as tasks the station owns. Handlers change ``state.StationState`` and act through
``port.StationPort``.

Every command the platform sends (``ingest.gateway.command_checks.COMMANDS``) is answered
the way a real station would, with effects on the simulation:

- RemoteStartTransaction / RequestStartTransaction: a session starts on the given
  (or first free) connector with the given id tag; Authorize first only if the
  station is configured so (1.6 ``AuthorizeRemoteTxRequests``, 2.0.1
  ``AuthCtrlr.AuthorizeRemoteStart``; default false). Rejected when no connector is
  free or the connector is unavailable.
- RemoteStopTransaction / RequestStopTransaction: the session stops with reason
  ``Remote``; Rejected for an unknown transaction.
- Reset: Accepted, running sessions stop (1.6 Hard/SoftReset, 2.0.1 ImmediateReset),
  the station closes its connection, reconnects and boots again.
- UnlockConnector: Unlocked (1.6 NotSupported / 2.0.1 UnknownConnector for a
  connector the station does not have).
- ChangeAvailability: Inoperative -> StatusNotification Unavailable (Scheduled while
  charging: applied when the session ends); Operative -> Available. A station in
  Inoperative answers remote starts Rejected.
- Get/ChangeConfiguration, Get/SetVariables: a config store; read-only keys answer
  Rejected, unknown keys NotSupported (1.6) / UnknownComponent/UnknownVariable (2.0.1).
- SetChargingProfile: kept as the station keeps it (every schedule period, limits in W
  or A x voltage x phases, validity, Absolute / Relative / Recurring; a new profile
  replaces the one with its id, in 1.6 also one with its connector, purpose and stack
  level); the EV follows the limit in
  force (``ingest.simulator.charging_profiles``: TxProfile over TxDefaultProfile, the
  highest stack level, capped by the ChargePointMaxProfile shared by the connectors
  charging) after the fleet's ``profile_reaction_s``. Rejected for an unknown connector,
  a TxProfile without a transaction or naming another one, a ChargePointMaxProfile not on
  connector 0, and on a station whose ``profile_behaviour`` is ``reject``; a station set
  to ``ignore`` answers Accepted and keeps drawing (non-compliant). ClearChargingProfile
  removes profiles (Unknown when nothing matched); GetCompositeSchedule answers the
  limit installed (Rejected for an unknown connector).
- TriggerMessage: sends the requested message after answering (NotImplemented for
  messages the simulator does not send).
- UpdateFirmware: Downloading, Downloaded, (2.0.1) SignatureVerified, Installing,
  Installed in simulated time, then a reboot with the new firmware version; failures
  seeded by the location (``ingest.simulator.firmware``).
- GetDiagnostics / GetLog: status notifications follow (Uploading/Uploaded); an upload
  location other than ftp(s) / http(s): GetLog Rejected, GetDiagnostics without a file
  name. GetBaseReport: a NotifyReport follows.
- SendLocalList: the list kept (full replaces, differential adds / removes entries
  without a status); NotSupported when the local list is disabled, VersionMismatch for a
  differential update not newer than the list. ClearCache: Rejected when the cache is
  disabled (1.6 ``AuthorizationCacheEnabled``, 2.0.1 ``AuthCacheCtrlr.Enabled``).
- ReserveNow: Accepted on a free connector (Occupied, Unavailable, Rejected for an
  unknown one); CancelReservation: Rejected for an unknown reservation. DataTransfer:
  Accepted for vendor ``org.chargeflow``, else UnknownVendorId.

The library validates each CALL against its schemas (a CALLERROR for an invalid one),
hands the payload to the handler in snake_case and validates the answer. Answers
carry floats, never Decimals: the library's JSON encoder would round a Decimal to
one decimal.
"""
