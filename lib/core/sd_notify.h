#pragma once

#include <cstdint>

namespace sluice {

// The two calls of systemd's sd-daemon API the agent makes, implemented here on the documented
// protocol (sd_notify(3): one datagram to $NOTIFY_SOCKET; sd_watchdog_enabled(3): $WATCHDOG_USEC
// and $WATCHDOG_PID) so that the binary does not load libsystemd, whose dependencies (libgcrypt,
// liblz4, liblzma, libcap, ...) cost about 0.7 MB of resident memory in every agent, systemd or
// not.

/// Sends `state` ("READY=1", "STATUS=...") to the service manager. 0 when $NOTIFY_SOCKET is unset,
/// 1 once sent, -errno when it could not be sent. `unset_environment` removes $NOTIFY_SOCKET after.
int sd_notify(int unset_environment, const char* state);

/// > 0 with the interval in `usec` when the service manager expects WATCHDOG=1 from this process,
/// 0 when it does not, -errno when $WATCHDOG_USEC or $WATCHDOG_PID is malformed.
int sd_watchdog_enabled(int unset_environment, std::uint64_t* usec);

}  // namespace sluice
