#ifndef CSTREAMBUS_SPAWN_H
#define CSTREAMBUS_SPAWN_H

#include <spawn.h>

/// Adds "close every descriptor from `lowest` up" to `actions` (glibc's
/// posix_spawn_file_actions_addclosefrom_np, which needs _GNU_SOURCE and so is not
/// imported into Swift). Returns 0 or an errno value.
int streambus_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowest);

#endif
