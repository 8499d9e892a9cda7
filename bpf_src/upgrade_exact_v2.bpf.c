// SPDX-License-Identifier: GPL-2.0
/* Version 2 of the exact-migration tool (see upgrade_exact.h). */
#define EXACT_VERSION 2
#include "upgrade_exact.h"
