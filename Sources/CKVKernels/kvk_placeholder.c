/* Placeholder translation unit: the kernels land in kvk_*.c files beside it. */
#include "CKVKernels.h"
