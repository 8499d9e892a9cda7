// SPDX-License-Identifier: GPL-2.0
/* Version B of the counting tool (see upgrade_count.h). */
#define UPGRADE_VERSION 2
#include "upgrade_count.h"
