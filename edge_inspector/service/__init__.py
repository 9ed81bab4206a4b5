"""service: the daemon's life under systemd and on the shop floor.

- ``notify``: sd_notify (READY, STATUS, WATCHDOG, STOPPING) over ``$NOTIFY_SOCKET``, no libsystemd;
- ``control``: the local control socket (live state, pause, resume, reload) and its client;
- ``reload``: SIGHUP: a new config and recipe for the next parts, or the old ones kept;
- ``retention``: old rows pruned by age and size, reject images stopped when the disk is nearly full;
- ``doctor``: the checks behind ``edge-inspector doctor``.
"""

from __future__ import annotations


def station_services(cfg) -> list:
    """The services the daemon runs beside the loop, in start order: the systemd notifier last, so
    READY=1 goes out when everything else is up."""
    from edge_inspector.service.config import control_socket_path
    from edge_inspector.service.control import ControlServer
    from edge_inspector.service.notify import SystemdNotifier
    from edge_inspector.service.reload import Reloader
    from edge_inspector.service.retention import Retention

    s = cfg.service
    services: list = [Retention(s.retention), Reloader()]
    if s.control.enabled:
        services.append(ControlServer(control_socket_path(cfg), s.control.group, s.watchdog.stuck_after_s))
    services.append(SystemdNotifier(s.watchdog.stuck_after_s, s.watchdog.status_every_s))
    return services
