// SPDX-License-Identifier: GPL-2.0
/* A broken version of the counting tool: the verifier refuses count_getppid. */
#define UPGRADE_VERSION 3
#include "upgrade_count.h"
