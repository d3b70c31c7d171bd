// Fast kernels: see kernels.h.
#include "slm_kernels.h"
