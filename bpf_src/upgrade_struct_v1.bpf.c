// SPDX-License-Identifier: GPL-2.0
/* Version 1 of the changing-struct tool (see upgrade_struct.h). */
#define STRUCT_VERSION 1
#include "upgrade_struct.h"
