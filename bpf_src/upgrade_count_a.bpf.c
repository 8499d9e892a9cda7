// SPDX-License-Identifier: GPL-2.0
/* Version A of the counting tool (see upgrade_count.h). */
#define UPGRADE_VERSION 1
#include "upgrade_count.h"
