// SPDX-License-Identifier: GPL-2.0
/* Version 2 of the changing-struct tool (see upgrade_struct.h). */
#define STRUCT_VERSION 2
#include "upgrade_struct.h"
