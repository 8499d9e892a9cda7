// SPDX-License-Identifier: GPL-2.0
/* Version 1 of the BPF congestion control of tcp_cc.h. */
#define CC_VERSION 1
#include "tcp_cc.h"
