// SPDX-License-Identifier: GPL-2.0
/* Version 2 of the BPF congestion control of tcp_cc.h (same name: it replaces version 1). */
#define CC_VERSION 2
#include "tcp_cc.h"
