// CPU emulation build: see vla_cuda_emu.h.
#pragma once
#include "vla_cuda_emu.h"
