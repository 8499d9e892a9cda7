// SPDX-License-Identifier: GPL-2.0
/* upgrade_exact_v1 with a second hook, sys_enter_getpgid (see upgrade_exact.h). */
#define EXACT_VERSION 1
#define EXACT_TWO_HOOKS
#include "upgrade_exact.h"
