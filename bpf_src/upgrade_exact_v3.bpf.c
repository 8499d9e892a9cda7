// SPDX-License-Identifier: GPL-2.0
/* Version 3 of the exact-migration tool: fields that cannot merge exactly (see upgrade_exact.h). */
#define EXACT_VERSION 3
#include "upgrade_exact.h"
