// SPDX-License-Identifier: GPL-2.0
/* upgrade_exact_v2 with a second hook, sys_enter_getpgid (see upgrade_exact.h). */
#define EXACT_VERSION 2
#define EXACT_TWO_HOOKS
#include "upgrade_exact.h"
