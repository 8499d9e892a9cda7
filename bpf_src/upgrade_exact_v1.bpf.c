// SPDX-License-Identifier: GPL-2.0
/* Version 1 of the exact-migration tool (see upgrade_exact.h). */
#define EXACT_VERSION 1
#include "upgrade_exact.h"
