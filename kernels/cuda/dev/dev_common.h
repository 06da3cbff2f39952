// dev/dev_common.h: what the dev/ programs share: exits on a failed call, and the comparison with
// the CPU reference (max |gpu - cpu| / max |cpu|; a non-finite value is infinitely wrong).
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../internal.h"

inline void check(int32_t status, petrel_context *ctx, const char *what) {
    if (status != PETREL_OK) {
        fprintf(stderr, "%s: %s\n", what, petrel_context_last_error(ctx));
        exit(1);
    }
}

inline void check_cuda(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

inline float rel_error(const std::vector<float> &got, const std::vector<float> &want) {
    float diff = 0, ref = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;
        diff = fmaxf(diff, fabsf(got[i] - want[i]));
        ref = fmaxf(ref, fabsf(want[i]));
    }
    return diff / fmaxf(ref, 1e-20f);
}
